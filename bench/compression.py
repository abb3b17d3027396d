"""Prompt compression: tokenlean vs the llmlingua library vs naive baselines, side by side in one run.

    python -m bench.compression                  # default: 8 HotpotQA questions (about 20 min here)
    python -m bench.compression --samples 16     # the committed results (34 min here)
    python -m bench.compression --samples 91     # every eligible question
    python -m bench.compression --no-peer        # without the llmlingua library

Data (../shared/data): HotpotQA distractor samples (10 paragraphs each, 2 supporting). Eligible:
the 91 of 100 whose gold answer is a span of the context (not yes/no), so survival is measurable.
The default subset is ``random.Random(0).sample(eligible, 30)[:N]`` (the tests draw from the other
61, which were also the development split for tuning). At 2x, 3x, 5x and 10x (of the context's
tokens, question kept whole) each method's compressed context is checked for the gold answer string,
and SmolLM2 answers from it (greedy, chat template, contains-answer accuracy); with the full
context as the reference. Then the GSM8K 8-shot chain-of-thought prompt (``prompt_hardest.txt``)
at 5x, 10x and 20x: the fraction of the numbers in the worked solutions that survive.

Methods: tokenlean (``LinguaCompressor`` defaults: question-aware for HotpotQA, plain for GSM8K),
the llmlingua library 0.2.2 (``PromptCompressor`` on the same SmolLM2 folder, CPU, float32 (its
CPU default), LongLLMLingua settings from its README for HotpotQA, LLMLingua's GSM8K settings),
random word dropping, and keeping the beginning of every paragraph. The library runs in its own
venv (bench/setup_llmlingua.sh) through bench/llmlingua_runner.py; both processes use the same
torch thread count (``--threads``, default 1: on this shared 2-core machine two threads spin
against the other tenants and run several times slower). Compression times are per prompt, model
loading excluded; speed-ups are medians of per-prompt ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import DATA, environment, goal, median, print_table, write_results

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-llmlingua" / "bin" / "python"
HOTPOT = DATA / "multidoc_qa" / "hipporag_v1_samples" / "hotpotqa_train.json"
GSM8K = DATA / "gsm8k" / "prompt_hardest.txt"
METHODS = ("tokenlean", "llmlingua", "random", "keep_beginning")
QA_SYSTEM = "Answer the question using the documents. Reply with the answer only, in a few words."


def contains(answer: str, text: str) -> bool:
    """The gold answer as a whole phrase, case-insensitively."""
    return re.search(r"(?<!\w)" + re.escape(answer.lower()) + r"(?!\w)", text.lower()) is not None


def documents(sample: dict[str, Any]) -> list[str]:
    """A HotpotQA sample's ten paragraphs as "Title\\ntext" blocks."""
    return [title + "\n" + "".join(sentences) for title, sentences in sample["context"]]


def hotpot_subset(n: int) -> list[dict[str, Any]]:
    """The documented fixed-seed subset (see the module docstring)."""
    samples = json.loads(HOTPOT.read_text())
    eligible = [
        s
        for s in samples
        if s["answer"].lower() not in ("yes", "no") and contains(s["answer"], "\n\n".join(documents(s)))
    ]
    subset = random.Random(0).sample(eligible, 30)
    rest = [s for s in eligible if s not in subset]
    return (subset + rest)[:n]


class Peer:
    """The llmlingua library in its own venv, one JSON line per job."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            BENCH_THREADS=str(threads),
            TIKTOKEN_CACHE_DIR=str(ROOT / ".venv-llmlingua" / "tiktoken-cache"),
        )
        self.process = subprocess.Popen(
            [str(PEER_PYTHON), str(ROOT / "bench" / "llmlingua_runner.py"), str(model_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError("llmlingua runner exited (run bench/setup_llmlingua.sh)")
        return dict(json.loads(line))

    def compress(self, blocks: list[str], question: str, ratio: float, settings: str) -> tuple[str, float]:
        """The library's compressed context and its time in seconds."""
        assert self.process.stdin is not None
        job = {"context": blocks, "question": question, "ratio": ratio, "settings": settings}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        out = self._read()
        return str(out["prompt"]), float(out["seconds"])

    def close(self) -> None:
        """End the runner."""
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


class Reader:
    """SmolLM2 answering from a context: greedy, chat template, a few tokens."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16).eval()

    def answer(self, context: str, question: str) -> str:
        """The model's answer to ``question`` given ``context``."""
        messages = [
            {"role": "system", "content": QA_SYSTEM},
            {"role": "user", "content": f"Documents:\n{context}\n\nQuestion: {question}"},
        ]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with self.torch.inference_mode():
            out = self.model.generate(
                **ids, max_new_tokens=12, do_sample=False, pad_token_id=self.tokenizer.eos_token_id
            )
        return str(self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


def compress_context(
    method: str, tools: dict[str, Any], blocks: list[str], question: str, ratio: float, settings: str
) -> tuple[str, float]:
    """One method's compressed context (question excluded) and seconds spent."""
    count = tools["count"]
    context_tokens = count("\n\n".join(blocks))
    if method == "llmlingua":
        return tools["peer"].compress(blocks, question, ratio, settings)
    started = time.perf_counter()
    if method == "tokenlean":
        fixed = count(question) + 2 if question else 0
        result = tools["tokenlean"].compress(
            blocks, question=question, target_tokens=round(context_tokens / ratio) + fixed
        )
        text = "\n\n".join(b for b in result.blocks if b)
    else:
        result = tools[method].compress(blocks, target_tokens=max(1, round(context_tokens / ratio)))
        text = "\n\n".join(b for b in result.blocks if b)
    return text, time.perf_counter() - started


def run_hotpot(
    tools: dict[str, Any],
    samples: list[dict[str, Any]],
    ratios: list[float],
    methods: list[str],
    reader: Reader | None,
) -> list[dict[str, Any]]:
    """Every (sample, ratio, method) row; methods interleaved per prompt so load hits all alike."""
    rows = []
    for n, sample in enumerate(samples):
        blocks, question, answer = documents(sample), sample["question"], sample["answer"]
        full = "\n\n".join(blocks)
        base = tools["count"](full)
        if reader is not None:
            rows.append(
                {
                    "task": "hotpot",
                    "id": sample["_id"],
                    "method": "full",
                    "ratio": 1.0,
                    "achieved": 1.0,
                    "seconds": 0.0,
                    "survives": True,
                    "correct": contains(answer, reader.answer(full, question)),
                }
            )
        for ratio in ratios:
            for method in methods:
                text, seconds = compress_context(method, tools, blocks, question, ratio, "longllmlingua")
                row = {
                    "task": "hotpot",
                    "id": sample["_id"],
                    "method": method,
                    "ratio": ratio,
                    "seconds": seconds,
                    "achieved": base / max(tools["count"](text), 1),
                    "survives": contains(answer, text),
                }
                if reader is not None:
                    row["correct"] = contains(answer, reader.answer(text, question))
                rows.append(row)
        print(f"hotpot {n + 1}/{len(samples)} done", flush=True)
    return rows


def solution_numbers(prompt: str) -> Counter[str]:
    """Numbers in the worked solutions (the lines after "Let's think step by step")."""
    numbers: Counter[str] = Counter()
    for demo in prompt.split("\n\n"):
        _, _, solution = demo.partition("Let's think step by step")
        numbers.update(_numbers(solution))
    return numbers


def _numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def run_gsm8k(tools: dict[str, Any], ratios: list[float], methods: list[str]) -> list[dict[str, Any]]:
    """The 8-shot CoT prompt, demonstrations as blocks, compressed without a question."""
    prompt = GSM8K.read_text().strip()
    blocks = [b for b in prompt.split("\n\n") if b.strip()]
    wanted = solution_numbers(prompt)
    base = tools["count"]("\n\n".join(blocks))
    rows = []
    for ratio in ratios:
        for method in methods:
            text, seconds = compress_context(method, tools, blocks, "", ratio, "llmlingua")
            kept = Counter(_numbers(text))
            survived = sum(min(count, kept[number]) for number, count in wanted.items())
            rows.append(
                {
                    "task": "gsm8k",
                    "method": method,
                    "ratio": ratio,
                    "seconds": seconds,
                    "achieved": base / max(tools["count"](text), 1),
                    "numbers_kept": survived / max(sum(wanted.values()), 1),
                }
            )
        print(f"gsm8k {ratio}x done", flush=True)
    return rows


def summarise(
    rows: list[dict[str, Any]], methods: list[str], hotpot_ratios: list[float], gsm_ratios: list[float]
) -> dict[str, Any]:
    """Per-method, per-ratio figures and the per-prompt speed-up over the library."""

    def pick(task: str, method: str, ratio: float) -> list[dict[str, Any]]:
        return [r for r in rows if r["task"] == task and r["method"] == method and r["ratio"] == ratio]

    table: dict[str, Any] = {"hotpot": {}, "gsm8k": {}}
    for method in methods:
        for ratio in hotpot_ratios:
            sel = pick("hotpot", method, ratio)
            table["hotpot"].setdefault(method, {})[str(ratio)] = {
                "answer_survives": _mean([r["survives"] for r in sel]),
                "accuracy": _mean([r["correct"] for r in sel if "correct" in r]),
                "achieved_ratio": median([r["achieved"] for r in sel]),
                "median_seconds": median([r["seconds"] for r in sel]),
            }
        for ratio in gsm_ratios:
            sel = pick("gsm8k", method, ratio)
            table["gsm8k"].setdefault(method, {})[str(ratio)] = {
                "numbers_kept": _mean([r["numbers_kept"] for r in sel]),
                "achieved_ratio": median([r["achieved"] for r in sel]),
                "seconds": median([r["seconds"] for r in sel]),
            }
    full = [r["correct"] for r in rows if r["method"] == "full"]
    table["hotpot_full_context_accuracy"] = _mean(full)
    table["speedup_vs_llmlingua"] = _speedups(rows)
    return table


def _mean(values: list[Any]) -> float:
    return sum(float(v) for v in values) / len(values) if values else float("nan")


def _speedups(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median over prompts of llmlingua seconds / tokenlean seconds, per task and overall."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["task"], row.get("id"), row["ratio"])

    ours = {key(r): r["seconds"] for r in rows if r["method"] == "tokenlean"}
    pairs = [
        (r["task"], r["seconds"] / ours[key(r)])
        for r in rows
        if r["method"] == "llmlingua" and key(r) in ours
    ]
    out = {task: median([v for t, v in pairs if t == task]) for task in ("hotpot", "gsm8k")}
    out["all"] = median([v for _, v in pairs])
    return out


def goals(table: dict[str, Any], hotpot_ratios: list[float], peer: bool) -> list[dict[str, Any]]:
    """Answer survival at every ratio >= the best other method; >= 3x faster than the library."""
    out = []
    for ratio in hotpot_ratios:
        cells = {m: table["hotpot"][m][str(ratio)]["answer_survives"] for m in table["hotpot"]}
        others = {m: v for m, v in cells.items() if m != "tokenlean"}
        best = max((v for v in others.values() if not math.isnan(v)), default=float("nan"))
        out.append(
            goal(
                f"HotpotQA answer survival at {ratio:g}x >= best of {'/'.join(others)}",
                f">= {best:.3f}",
                round(cells["tokenlean"], 3),
                cells["tokenlean"] >= best and peer,
            )
        )
    speed = table["speedup_vs_llmlingua"]["all"]
    out.append(
        goal(
            "compression time vs the llmlingua library (median per-prompt speed-up)",
            ">= 3x",
            None if math.isnan(speed) else round(speed, 2),
            lambda v: v is not None and v >= 3,
        )
    )
    return out


def plot(
    table: dict[str, Any], methods: list[str], hotpot_ratios: list[float], gsm_ratios: list[float]
) -> Path:
    """Survival and accuracy vs ratio (HotpotQA), numbers kept vs ratio (GSM8K), one curve per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (
        ("hotpot", "answer_survives", hotpot_ratios, "HotpotQA: gold answer survives"),
        ("hotpot", "accuracy", hotpot_ratios, "HotpotQA: SmolLM2 answer accuracy"),
        ("gsm8k", "numbers_kept", gsm_ratios, "GSM8K CoT: solution numbers kept"),
    )
    for ax, (task, field, ratios, title) in zip(axes, panels, strict=True):
        for method in methods:
            ys = [table[task][method][str(r)][field] for r in ratios]
            ax.plot(ratios, ys, marker="o", label=method)
        if field == "accuracy":
            ax.axhline(table["hotpot_full_context_accuracy"], color="grey", ls="--", label="full context")
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{r:g}x" for r in ratios])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
        ax.set_xlabel("compression ratio")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(__file__).resolve().parent / "results" / "compression.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def print_tables(
    table: dict[str, Any], methods: list[str], hotpot_ratios: list[float], gsm_ratios: list[float]
) -> None:
    """The README's tables."""
    rows = []
    for method in methods:
        for ratio in hotpot_ratios:
            c = table["hotpot"][method][str(ratio)]
            rows.append(
                [
                    method,
                    f"{ratio:g}x",
                    round(c["achieved_ratio"], 2),
                    round(c["answer_survives"], 3),
                    round(c["accuracy"], 3),
                    round(c["median_seconds"], 2),
                ]
            )
    print_table(["method", "target", "achieved", "answer survives", "SmolLM2 accuracy", "median s"], rows)
    print(f"full context accuracy: {table['hotpot_full_context_accuracy']:.3f}")
    rows = []
    for method in methods:
        for ratio in gsm_ratios:
            c = table["gsm8k"][method][str(ratio)]
            rows.append(
                [
                    method,
                    f"{ratio:g}x",
                    round(c["achieved_ratio"], 2),
                    round(c["numbers_kept"], 3),
                    round(c["seconds"], 2),
                ]
            )
    print_table(["method", "target", "achieved", "numbers kept", "seconds"], rows)
    print("speed-up vs llmlingua (median per prompt):", table["speedup_vs_llmlingua"])


def build_tools(no_peer: bool, threads: int) -> dict[str, Any]:
    """The compressors, the counter (SmolLM2's tokenizer) and the peer process."""
    from tokenlean.compressors import KeepBeginningCompressor, LinguaCompressor, RandomDropCompressor
    from tokenlean.models import default_model_dir
    from tokenlean.tokens import shared_token_counter

    counter = shared_token_counter()
    ours = LinguaCompressor(counter=counter)
    ours.scorer.load()
    return {
        "count": counter.count,
        "counter": counter,
        "tokenlean": ours,
        "random": RandomDropCompressor(counter=counter),
        "keep_beginning": KeepBeginningCompressor(counter=counter),
        "peer": None if no_peer else Peer(default_model_dir(), threads),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the whole comparison and write bench/results/compression.{json,png}."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--ratios", default="2,3,5,10")
    parser.add_argument("--gsm-ratios", default="5,10,20")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-qa", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tokenlean.compressors import LinguaCompressor
    from tokenlean.models import default_model_dir

    torch.set_num_threads(args.threads)
    hotpot_ratios = [float(r) for r in args.ratios.split(",")]
    gsm_ratios = [float(r) for r in args.gsm_ratios.split(",")]
    methods = [m for m in METHODS if not (m == "llmlingua" and args.no_peer)]
    tools = build_tools(args.no_peer, args.threads)
    ours, peer, counter = tools["tokenlean"], tools["peer"], tools["counter"]
    reader = None if args.no_qa else Reader(default_model_dir())
    started = time.perf_counter()
    samples = hotpot_subset(args.samples)
    rows = run_hotpot(tools, samples, hotpot_ratios, methods, reader)
    rows += run_gsm8k(tools, gsm_ratios, methods)
    fp32 = LinguaCompressor(counter=counter, scorer=type(ours.scorer)(dtype="float32"))
    fp32_rows = run_gsm8k({**tools, "tokenlean": fp32}, gsm_ratios, ["tokenlean"])
    if peer is not None:
        peer.close()
    table = summarise(rows, methods, hotpot_ratios, gsm_ratios)
    table["gsm8k_tokenlean_float32_seconds"] = {str(r["ratio"]): round(r["seconds"], 3) for r in fp32_rows}
    print_tables(table, methods, hotpot_ratios, gsm_ratios)
    payload = {
        "benchmark": "compression",
        "command": "python -m bench.compression " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": environment(("matplotlib",)),
        "setup": {
            "samples": len(samples),
            "sample_ids": [s["_id"] for s in samples],
            "threads": args.threads,
            "tokenlean_dtype": str(ours.scorer._model.dtype),
            "tokenlean_config": repr(ours.config),
            "llmlingua": peer.info if peer is not None else None,
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "results": table,
        "rows": rows,
        "goals": goals(table, hotpot_ratios, peer is not None),
    }
    print("wrote", write_results("compression", payload), plot(table, methods, hotpot_ratios, gsm_ratios))
    for g in payload["goals"]:
        print(
            ("MET     " if g["met"] else "NOT MET ") + g["name"] + f": {g['achieved']} (target {g['target']})"
        )


if __name__ == "__main__":
    main()
