"""Constrained decoding on the embedded backend: cost per token and schema validity, grammar vs none.

Workload: the 50 hand-written JSON-schema tasks of ``bench/structured_tasks.py``. Each task runs
twice on the same ``LocalBackend`` (SmolLM2-135M, greedy, drafting off, prefix reuse off, one
torch thread): once with ``response_format: json_schema`` (llguidance's mask applied per token)
and once without a grammar but with the very same prompt (the messages the backend builds for
the constrained request, schema text included, sent as a plain request).

Figures: decode time per token: the decode thread's CPU time (``time.thread_time``) over every
step after the first token (forward pass, mask, choice, detokenisation), summed over tasks per
arm, so that other processes on the shared machine do not decide the comparison (wall time is
reported beside it); the grammar's own CPU time per token (mask + consume, inside the loop);
grammar compile time per schema (JSON schema -> grammar, check, matcher); the one-time
vocabulary index; and the rate of schema-valid outputs (parsed and validated with
``jsonschema``; without a grammar also leniently, from the first ``{`` to the last ``}``).

    python -m bench.structured          # writes bench/results/structured.{json,png}  (~10 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, cast

from bench.common import environment, goal, median, percentile, print_table, write_results
from bench.structured_tasks import AUTO_TOOLS, NEEDS_TOOL, NO_TOOL, TASKS

# CPU seconds of the decode thread (time.thread_time: time spent waiting for a core under load is
# not counted, so a shared machine's contention does not decide the comparison) and wall seconds.
STEPS: dict[str, Any] = {"cpu": 0.0, "wall": 0.0, "calls": 0}
GRAMMAR: dict[str, Any] = {"cpu": 0.0, "wall": 0.0, "calls": 0}


def timed(method: Any, into: dict[str, Any]) -> Any:
    """``method`` with its thread CPU time and wall time added to ``into``."""

    def wrapper(*args: Any) -> Any:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return method(*args)
        finally:
            into["cpu"] += time.thread_time() - cpu
            into["wall"] += time.perf_counter() - wall
            into["calls"] += 1

    return wrapper


def instrument() -> None:
    """Time every decode step after the first token (``SingleRowDecoder._step``: forward pass,
    mask, choice, detokenisation) and, within it, the grammar's mask and consume calls."""
    from tokenlean.backends.local.grammar import GrammarConstraint
    from tokenlean.backends.local.single_row import SingleRowDecoder

    SingleRowDecoder._step = timed(SingleRowDecoder._step, STEPS)  # type: ignore[method-assign]
    GrammarConstraint.shape = timed(GrammarConstraint.shape, GRAMMAR)  # type: ignore[method-assign]
    GrammarConstraint.accept = timed(GrammarConstraint.accept, GRAMMAR)  # type: ignore[method-assign]


async def run(backend: Any, request: Any) -> dict[str, Any]:
    """One answer: text, finish reason, tokens, and its decode steps' CPU and wall seconds."""
    steps, grammar = dict(STEPS), dict(GRAMMAR)
    response = await backend.complete(request)
    answer = response.choices[0]
    return {
        "text": answer.text, "finish": answer.finish_reason, "tokens": response.usage.completion_tokens,
        "steps": STEPS["calls"] - steps["calls"], "step_cpu_s": STEPS["cpu"] - steps["cpu"],
        "step_wall_s": STEPS["wall"] - steps["wall"], "grammar_cpu_s": GRAMMAR["cpu"] - grammar["cpu"],
    }  # fmt: skip


def validity(text: str, schema: dict[str, Any]) -> tuple[bool, bool]:
    """(valid as sent, valid after cutting to the outermost braces) against ``schema``."""
    import jsonschema

    def ok(candidate: str) -> bool:
        try:
            jsonschema.validate(json.loads(candidate), schema)
            return True
        except (json.JSONDecodeError, jsonschema.ValidationError):
            return False

    start, end = text.find("{"), text.rfind("}")
    return ok(text), ok(text[start : end + 1]) if 0 <= start < end else False


def compile_ms(backend: Any, schema: dict[str, Any]) -> float:
    """JSON schema -> llguidance grammar -> checked -> a fresh matcher, in milliseconds."""
    from tokenlean.backends.local.grammar import json_grammar

    started = time.perf_counter()
    grammar = json_grammar(schema)
    backend.grammars.check(grammar, "bench")
    backend.grammars.constraint(grammar)
    return (time.perf_counter() - started) * 1000


async def task_pair(
    backend: Any, name: str, prompt: str, schema: dict[str, Any], max_tokens: int
) -> dict[str, Any]:
    """One task with the grammar, then without it on the same prompt.

    The plain run may write up to twice the grammar run's tokens (+16): room for the same JSON
    with looser spacing, without decoding ``max_tokens`` of prose on a shared 2-core machine.
    """
    from tokenlean.backends.local.structured import chat_messages, structured_plan
    from tokenlean.middleware.types import Message, Request

    fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    constrained = Request(messages=(Message("user", prompt),), response_format=fmt, temperature=0,
                          max_tokens=max_tokens, options={"draft": "off"})  # fmt: skip
    turns = chat_messages(constrained, structured_plan(constrained))
    plain = constrained.replace(
        messages=[Message(cast(Any, t["role"]), t["content"]) for t in turns], response_format=None
    )
    record: dict[str, Any] = {"task": name, "compile_ms": compile_ms(backend, schema)}
    record["grammar"] = await run(backend, constrained)
    room = min(max_tokens, 2 * record["grammar"]["tokens"] + 16)
    record["none"] = await run(backend, plain.replace(max_tokens=room))
    for arm in ("grammar", "none"):
        record[arm]["valid"], record[arm]["valid_lenient"] = validity(record[arm]["text"], schema)
    return record


async def auto_trial(backend: Any, question: str, max_tokens: int) -> dict[str, Any]:
    """``tool_choice: "auto"`` two ways on one question: the grammar that allows a call or text,
    and free decoding of the same prompt whose text is read as a call when it is one."""
    from tokenlean.backends.local.structured import chat_messages, structured_plan
    from tokenlean.backends.local.tool_calls import parse_tool_call
    from tokenlean.middleware.types import Message, Request

    request = Request(messages=(Message("user", question),), tools=tuple(AUTO_TOOLS), tool_choice="auto",
                      temperature=0, max_tokens=max_tokens, options={"draft": "off"})  # fmt: skip
    plan = structured_plan(request)
    turns = [Message(cast(Any, t["role"]), t["content"]) for t in chat_messages(request, plan)]
    constrained = (await backend.complete(request)).choices[0]
    free = (await backend.complete(request.replace(messages=turns, tools=(), tool_choice=None))).choices[0]
    text = free.text.strip()
    free_call = parse_tool_call(text[text.find("{") : text.rfind("}") + 1], plan.tool_names)
    return {"question": question, "grammar_called": bool(constrained.tool_calls), "grammar_text": constrained.text,
            "free_called": free_call is not None, "free_text": free.text}  # fmt: skip


def summarise_auto(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """How often each way called a tool when one was needed, and answered in text when not."""
    needed = [t for t in trials if t["question"] in NEEDS_TOOL]
    not_needed = [t for t in trials if t["question"] in NO_TOOL]
    return {
        way: {"called_when_needed": sum(t[f"{way}_called"] for t in needed), "needed": len(needed),
              "text_when_not_needed": sum(not t[f"{way}_called"] for t in not_needed), "not_needed": len(not_needed)}
        for way in ("grammar", "free")
    }  # fmt: skip


def summarise(records: list[dict[str, Any]], index_s: float) -> dict[str, Any]:
    """Per-arm totals, the per-token figures and the goals."""
    arms: dict[str, Any] = {}
    for arm in ("grammar", "none"):
        rows = [r[arm] for r in records]
        steps = sum(r["steps"] for r in rows)
        arms[arm] = {
            "valid": sum(r["valid"] for r in rows), "valid_lenient": sum(r["valid_lenient"] for r in rows),
            "finished_stop": sum(r["finish"] == "stop" for r in rows), "tasks": len(rows),
            "completion_tokens": sum(r["tokens"] for r in rows), "decode_steps": steps,
            "ms_per_token": 1000 * sum(r["step_cpu_s"] for r in rows) / steps,
            "wall_ms_per_token": 1000 * sum(r["step_wall_s"] for r in rows) / steps,
            "grammar_ms_per_token": 1000 * sum(r["grammar_cpu_s"] for r in rows) / steps,
        }  # fmt: skip
    grammar, none = arms["grammar"], arms["none"]
    slower = 100 * (grammar["ms_per_token"] / none["ms_per_token"] - 1)
    compiles = [r["compile_ms"] for r in records]
    figures = {
        "arms": arms, "decode_slower_pct": slower,
        "decode_slower_wall_pct": 100 * (grammar["wall_ms_per_token"] / none["wall_ms_per_token"] - 1),
        "grammar_own_time_pct_of_step": 100 * grammar["grammar_ms_per_token"] / none["ms_per_token"],
        "compile_ms": {"median": median(compiles), "p90": percentile(compiles, 90), "max": max(compiles)},
        "vocabulary_index_s": index_s,
    }  # fmt: skip
    total = grammar["tasks"]
    goals = [
        goal("schema-valid outputs with the grammar", f"{total}/{total} (100%)", grammar["valid"],
             lambda v: v == total),
        goal("decode CPU time per token, grammar vs none", "<= +5%", round(slower, 2), lambda v: v <= 5.0),
    ]  # fmt: skip
    return {"figures": figures, "goals": goals}


def plot(payload: dict[str, Any], path: str) -> None:
    """Validity per arm, and decode time per token with the grammar's own share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = payload["figures"]["arms"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["grammar", "none (strict)", "none (lenient)"]
    values = [arms["grammar"]["valid"], arms["none"]["valid"], arms["none"]["valid_lenient"]]
    left.bar(
        labels,
        [100 * v / arms["grammar"]["tasks"] for v in values],
        color=["tab:green", "tab:red", "tab:orange"],
    )
    left.set_ylabel("schema-valid outputs (%)")
    left.set_title(f"{arms['grammar']['tasks']} JSON-schema tasks, SmolLM2-135M, greedy")
    model = [
        arms["grammar"]["ms_per_token"] - arms["grammar"]["grammar_ms_per_token"],
        arms["none"]["ms_per_token"],
    ]
    right.bar(["grammar", "none"], model, label="decode step", color="tab:blue")
    right.bar(["grammar"], [arms["grammar"]["grammar_ms_per_token"]], bottom=[model[0]], label="mask + consume",
              color="tab:purple")  # fmt: skip
    right.set_ylabel("decode-thread CPU ms per token")
    right.set_title(f"decode per token: {payload['figures']['decode_slower_pct']:+.1f}% with the grammar")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from tokenlean.backends.local import LocalBackend

    backend = LocalBackend(prefix_cache_entries=0, draft="off", threads=args.threads)
    instrument()
    started = time.perf_counter()
    backend.grammars.lltokenizer()
    compile_ms(backend, {"type": "object"})  # the first mask indexes the vocabulary
    index_s = time.perf_counter() - started
    records = []
    for name, prompt, schema in TASKS[: args.tasks]:
        record = await task_pair(backend, name, prompt, schema, args.max_tokens)
        records.append(record)
        g, n = record["grammar"], record["none"]
        print(
            f"{name:18} grammar valid={g['valid']} {g['tokens']:3d} tok | none valid={n['valid']} {n['tokens']:3d} tok"
        )
    trials = [await auto_trial(backend, q, args.auto_max_tokens) for q in (NEEDS_TOOL + NO_TOOL)[: args.auto]]
    await backend.aclose()
    summary = summarise(records, index_s)
    summary["figures"]["tool_choice_auto"] = summarise_auto(trials)
    return {"records": records, "auto_trials": trials, **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=len(TASKS))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--auto", type=int, default=len(NEEDS_TOOL) + len(NO_TOOL), help="tool_choice auto trials"
    )
    parser.add_argument("--auto-max-tokens", type=int, default=40)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    payload = {
        "benchmark": "structured",
        "environment": environment(("llguidance", "jsonschema")),
        "settings": vars(args),
        **result,
    }
    arms = result["figures"]["arms"]
    print_table(
        ["arm", "valid", "valid (lenient)", "CPU ms/token", "wall ms/token", "grammar CPU ms/token"],
        [
            [
                arm,
                a["valid"],
                a["valid_lenient"],
                a["ms_per_token"],
                a["wall_ms_per_token"],
                a["grammar_ms_per_token"],
            ]
            for arm, a in arms.items()
        ],
    )
    print_table(
        ["goal", "target", "achieved", "met"],
        [[g["name"], g["target"], g["achieved"], g["met"]] for g in result["goals"]],
    )
    print(json.dumps(result["figures"]["tool_choice_auto"]))
    path = write_results("structured", payload)
    plot(payload, str(path.with_suffix(".png")))


if __name__ == "__main__":
    main()
