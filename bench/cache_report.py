"""Tables and the plot of ``bench/cache.py``; ``python -m bench.cache_report`` redraws them from
bench/results/cache.json without rerunning the benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS, print_table


def at_most(points: list[dict[str, float]], false_hit: float) -> dict[str, float]:
    """The usable point (threshold in (0,1]) with the most duplicate hits at <= ``false_hit``."""
    usable = [p for p in points if p["threshold"] > 0 and p["false_hit"] <= false_hit]
    return max(usable, key=lambda p: (p["qqp_hit"], p["threshold"]))


def _pct(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}%}"


def report(result: dict[str, Any]) -> str:
    """The markdown tables the README and docs/cache.md quote."""
    rows = []
    for name, curve in result["curves"].items():
        p = at_most(curve, 0.02)
        rows.append(
            [
                f"{name}, best at <=2% false hits",
                p["threshold"],
                _pct(p["qqp_hit"]),
                _pct(p["false_hit"], 2),
                _pct(p["false_hit_test_split"], 2),
                _pct(p["mrpc1_hit"]),
            ]
        )
    d = result["tokenlean_default_threshold_0.7"]
    rows.append(
        [
            "tokenlean, default threshold",
            0.7,
            _pct(d["qqp_hit"]),
            _pct(d["false_hit"], 2),
            _pct(d["false_hit_test_split"], 2),
            _pct(d["mrpc1_hit"]),
        ]
    )
    for p in result["gptcache_points"]:
        rows.append(
            [
                f"GPTCache (cosine >= {p['cosine_equivalent']:.2f})",
                p["threshold"],
                _pct(p["qqp_hit"]),
                _pct(p["false_hit"], 2),
                _pct(p["false_hit_test_split"], 2),
                _pct(p["mrpc1_hit"]),
            ]
        )
    text = print_table(
        [
            "pairwise (store one, query the other)",
            "threshold",
            "QQP duplicates hit",
            "MRPC non-paraphrases hit",
            "same, MRPC test split",
            "MRPC paraphrases hit",
        ],
        rows,
    )
    dom = [
        [
            r["gptcache_threshold"],
            _pct(r["gptcache_false_hit"]),
            _pct(r["gptcache_hit"]),
            _pct(r["tokenlean_hit"]),
            "yes" if r["above"] else "NO",
        ]
        for r in result["dominance_full_curve"]
    ]
    text += "\n\n" + print_table(
        ["GPTCache threshold", "its false hits", "its hits", "tokenlean hits at no more false hits", "above"],
        dom,
    )
    shared = result["shared_cache"]
    srows = [
        [f"{name}, best at <=2% false hits", *_shared_cells(at_most(curve, 0.02))]
        for name, curve in shared["curves"].items()
    ]
    srows.append(["tokenlean, default threshold 0.7", *_shared_cells(shared["tokenlean_at_0.7"])])
    srows += [[f"GPTCache @{p['threshold']}", *_shared_cells(p)] for p in shared["gptcache_points"]]
    text += "\n\n" + print_table(
        [
            "one shared cache, all entries",
            "threshold",
            "QQP own pair hit",
            "QQP other entry",
            "MRPC-0 own pair hit (false)",
            "MRPC-0 other entry",
        ],
        srows,
    )
    probes = result["probes"]
    probe_rows = [
        [
            f,
            f"{probes['tokenlean_at_0.7'][f]:.1%}",
            f"{probes['gptcache'][f]['0.8']:.1%}",
            f"{probes['gptcache'][f]['0.95']:.1%}",
        ]
        for f in probes["tokenlean_at_0.7"]
    ]
    text += "\n\n" + print_table(
        ["flip probe (any hit is wrong)", "tokenlean @0.7", "GPTCache @0.8 (default)", "GPTCache @0.95"],
        probe_rows,
    )
    lat = result["latency"]
    lat_rows = [
        [f"tokenlean lookup, {n} entries", f"{v['p50_ms']:.3f}", f"{v['p99_ms']:.3f}"]
        for n, v in lat["lookup"].items()
    ]
    for name, value in lat["embed"].items():
        if name.endswith("_threads"):
            lat_rows.append(
                [
                    f"MiniLM embedding of one question, torch {name.replace('_', ' ')}",
                    f"{value['p50_ms']:.2f}",
                    f"{value['p99_ms']:.2f}",
                ]
            )
    lat_rows.append(
        [
            f"GPTCache get(), {result['stored_entries']} entries",
            f"{lat['gptcache_get']['p50_ms']:.3f}",
            f"{lat['gptcache_get']['p99_ms']:.3f}",
        ]
    )
    for kind in ("miss", "exact hit", "semantic hit") if lat.get("proxy") else ():
        lat_rows.append([f"proxy end to end, {kind}", f"{lat['proxy'][kind]['p50_ms']:.1f}", "-"])
    text += "\n\n" + print_table(["latency", "p50 ms", "p99 ms"], lat_rows)
    return text


def _shared_cells(p: dict[str, float]) -> list[Any]:
    return [
        p["threshold"],
        _pct(p["qqp_hit"]),
        _pct(p["qqp_other"]),
        _pct(p["false_hit"], 2),
        _pct(p["mrpc0_other"], 2),
    ]


def plot(curves: dict[str, list[dict[str, float]]], gpt: list[dict[str, float]], path: Path) -> None:
    """Duplicate hit rate vs false-hit rate: tokenlean (and ablations) vs GPTCache's measured points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, limit in zip(axes, (1.0, 0.1), strict=True):
        for name, points in curves.items():
            main = name == "tokenlean"
            usable = [p for p in points if p["threshold"] > 0 or not main]
            ax.plot(
                [p["false_hit"] for p in usable],
                [p["qqp_hit"] for p in usable],
                lw=2.5 if main else 1,
                label=f"{name} (thresholds in (0,1])" if main else name,
                zorder=3 if main else 2,
            )
            if main:
                below = [p for p in points if p["threshold"] <= 0]
                ax.plot(
                    [p["false_hit"] for p in below],
                    [p["qqp_hit"] for p in below],
                    "C0--",
                    lw=1,
                    label="tokenlean score below 0 (not a setting)",
                )
        ax.plot(
            [p["false_hit"] for p in gpt], [p["qqp_hit"] for p in gpt], "ks-", label="GPTCache (same MiniLM)"
        )
        for p in gpt:
            if p["false_hit"] <= limit:
                ax.annotate(
                    f"{p['threshold']}",
                    (p["false_hit"], p["qqp_hit"]),
                    fontsize=7,
                    xytext=(4, -9),
                    textcoords="offset points",
                )
        ax.axvline(0.02, color="grey", ls=":", lw=1)
        ax.set_xlim(0, limit)
        ax.set_xlabel("false-hit rate (MRPC non-paraphrases that hit)")
        ax.set_ylabel("hit rate (QQP duplicates answered from their pair)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Semantic cache: hit rate vs false-hit rate")
    axes[1].set_title("zoom: false-hit rate <= 10% (dotted: 2%)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    result = json.loads((RESULTS / "cache.json").read_text())
    report(result)
    plot(result["curves"], result["gptcache_points"], RESULTS / "cache.png")


if __name__ == "__main__":
    main()
