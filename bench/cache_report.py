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


def _point_row(label: str, p: dict[str, Any]) -> list[Any]:
    """One row of the QQP/MRPC table: a curve point's threshold, hit and false-hit rates."""
    return [
        label,
        p["threshold"],
        _pct(p["qqp_hit"]),
        _pct(p["false_hit"], 2),
        _pct(p["false_hit_test_split"], 2),
        _pct(p["mrpc1_hit"]),
    ]


def report(result: dict[str, Any]) -> str:
    """The markdown tables the README and docs/cache.md quote."""
    rows = [
        _point_row(f"{name}, best at <=2% false hits", at_most(curve, 0.02))
        for name, curve in result["curves"].items()
    ]
    rows.append(_point_row("tokenlean, default threshold", result["tokenlean_default_threshold"]))
    for p in result["gptcache_points"]:
        rows.append(_point_row(f"GPTCache (cosine >= {p['cosine_equivalent']:.2f})", p))
    text = near_miss_tables(result["near_miss"]) + "\n\n"
    text += print_table(
        [
            "MRPC protocol, pairwise (store one, query the other)",
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
    srows.append(["tokenlean, default threshold", *_shared_cells(shared["tokenlean_at_default"])])
    srows += [[f"GPTCache @{p['threshold']}", *_shared_cells(p)] for p in shared.get("gptcache_points", [])]
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
    gpt = probes.get("gptcache")
    probe_rows = [
        [
            f,
            f"{probes['tokenlean_at_default'][f]:.1%}",
            f"{gpt[f]['0.8']:.1%}" if gpt else "not run",
            f"{gpt[f]['0.95']:.1%}" if gpt else "not run",
        ]
        for f in probes["tokenlean_at_default"]
    ]
    text += "\n\n" + print_table(
        ["flip probe (any hit is wrong)", "tokenlean, default", "GPTCache @0.8 (default)", "GPTCache @0.95"],
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
    if "gptcache_get" in lat:
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


def near_miss_tables(near: dict[str, Any]) -> str:
    """Hit rate at each false-hit rate on QQP test and MRPC test, per decision; the default's rates."""
    grid = [0.005, 0.01, 0.02, 0.05, 0.07, 0.1]
    rows = []
    for part in ("test", "mrpc"):
        for name, curve in near[part]["curves"].items():
            at = {p["false_hit"]: p["hit"] for p in curve}
            rows.append(
                [f"{'QQP test' if part == 'test' else 'MRPC test'}: {name}", *(_pct(at[f]) for f in grid)]
            )
    text = print_table(["hit rate at <= false hits", *(f"<= {f:.1%}" for f in grid)], rows)
    rows = []
    for part, label in (("val", "QQP val"), ("test", "QQP test"), ("mrpc", "MRPC test")):
        d = near[part]["at_default"]
        g = near[part]["guard_at_0.7"]
        rows.append(
            [
                label,
                d["threshold"],
                _pct(d["hit"]),
                _pct(d["false_hit"], 2),
                _pct(g["hit"]),
                _pct(g["false_hit"], 2),
            ]
        )
    text += "\n\n" + print_table(
        [
            "default threshold",
            "head threshold",
            "hits",
            "false hits",
            "earlier guard @0.7 hits",
            "its false hits",
        ],
        rows,
    )
    rows = [
        [
            p["gptcache_threshold"],
            _pct(p["false_hit"], 2),
            _pct(p["hit"]),
            _pct(p["ours"]),
            "yes" if p["above"] else "NO",
        ]
        for p in near["test"]["gptcache_points"]
    ]
    text += "\n\n" + print_table(
        ["GPTCache threshold (QQP test)", "its false hits", "its hits", "tokenlean hits at no more", "above"],
        rows,
    )
    return text


def _shared_cells(p: dict[str, float]) -> list[Any]:
    return [
        p["threshold"],
        _pct(p["qqp_hit"]),
        _pct(p["qqp_other"]),
        _pct(p["false_hit"], 2),
        _pct(p["mrpc0_other"], 2),
    ]


def plot(result: dict[str, Any], path: Path) -> None:
    """Hit rate vs false-hit rate: QQP test and MRPC test per decision (with GPTCache's points on
    QQP test), and the MRPC protocol's curves (QQP duplicates vs MRPC non-paraphrases)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    near = result["near_miss"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    for ax, part, title in (
        (axes[0], "test", "QQP test split (near misses)"),
        (axes[1], "mrpc", "MRPC test split"),
    ):
        for name, curve in near[part]["curves"].items():
            ax.plot(
                [p["false_hit"] for p in curve],
                [p["hit"] for p in curve],
                "o-",
                ms=3,
                lw=2.5 if "head" in name else 1,
                label=name,
            )
        if part == "test":
            gpt = near["test"]["gptcache_points"]
            ax.plot(
                [p["false_hit"] for p in gpt],
                [p["hit"] for p in gpt],
                "ks",
                label=f"GPTCache at its thresholds ({near.get('gptcache_points_source', 'derived')})",
            )
        d = near[part]["at_default"]
        ax.plot([d["false_hit"]], [d["hit"]], "r*", ms=12, label=f"default threshold {d['threshold']}")
        ax.set_xscale("log")
        ax.set_xlabel("false-hit rate (non-duplicates answered), log scale")
        ax.set_ylabel("hit rate (duplicates answered)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for name, points in result["curves"].items():
        usable = [p for p in points if p["threshold"] > 0]
        ax.plot(
            [p["false_hit"] for p in usable],
            [p["qqp_hit"] for p in usable],
            lw=2.5 if name == "tokenlean" else 1,
            label=name,
        )
    gpt = result["gptcache_points"]
    if gpt:
        ax.plot([p["false_hit"] for p in gpt], [p["qqp_hit"] for p in gpt], "ks-", label="GPTCache (run)")
    ax.set_xlim(0, 0.1)
    ax.axvline(0.02, color="grey", ls=":", lw=1)
    ax.set_xlabel("false-hit rate (MRPC non-paraphrases that hit)")
    ax.set_ylabel("hit rate (QQP test duplicates)")
    ax.set_title("MRPC protocol (zoom <= 10%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    result = json.loads((RESULTS / "cache.json").read_text())
    print(report(result))
    plot(result, RESULTS / "cache.png")


if __name__ == "__main__":
    main()
