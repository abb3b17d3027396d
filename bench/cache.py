"""Benchmark: tokenlean's response cache vs GPTCache, same MiniLM embeddings, one run.

    python -m bench.cache            # default: 2,000 QQP test-split duplicates in the MRPC protocol
    python -m bench.cache --quick    # no new GPTCache run (a cached one on QQP test is reused), no proxy
    python -m bench.cache --full     # every QQP test-split duplicate in the MRPC protocol

Two parts. **Near misses** (bench/cache_qqp.py): labelled QQP pairs split by text cluster
(bench/qqp_split.py) into fit / val / test; the duplicate head is trained on fit
(bench/cache_head.py), thresholds are chosen on val, figures come from test (never tuned on) and
MRPC's test split; the goals of issue 17 are computed there. **MRPC protocol** (below, the
earlier benchmark): QQP duplicate pairs, now the test split's duplicates (store ``text_a``, ask
``text_b``: a hit must return its pair's answer); MRPC pairs labelled 0, non-paraphrases (any hit
of its pair is a false hit); MRPC test-split paraphrases (label 1, long news sentences: shown, not
a goal). All go into one cache with one context, for both systems. The guard's constants were
tuned on MRPC's train split, so the MRPC test split is reported on its own too.

The tokenlean curve is the ROC of its score (cosine minus guard penalties) over all cut points,
computed with the real ``ResponseCache`` (memory store, faiss index, guard); thresholds a user can
set are in (0, 1], and the part of the curve below 0 only exists to trace the score. GPTCache is
run for real in .venv-gptcache (``bench/setup_gptcache.sh``) at several thresholds.

Also measured: meaning-flip probes (changed number, added negation, swapped comparison, another
system prompt), lookup latency at 10k and 100k entries, and hit vs miss latency end to end through
the proxy with the embedded model. The KV prefix reuse figure (issue part 5) is the lead's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache_latency import embed_latency, growth_stall, index_recall, lookup_latency, proxy_latency
from bench.cache_qqp import FALSE_HIT_GRID, mrpc_test, near_miss, texts_of
from bench.cache_report import at_most, plot, report
from bench.common import DATA, environment, goal, median, percentile, write_results
from tokenlean.cache.head import DEFAULT_THRESHOLD

ROOT = Path(__file__).resolve().parents[1]
GPTCACHE_PY = ROOT / ".venv-gptcache" / "bin" / "python"
GPT_THRESHOLDS = [0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99]  # GPTCache's default is 0.8
DEFAULT = DEFAULT_THRESHOLD["learned"]
# every 0.01, plus the default (which need not be on that grid)
SWEEP = sorted({round(t, 3) for t in np.arange(-2.0, 1.0001, 0.01)} | {DEFAULT})
SYSTEM = "You are a helpful assistant."
EMBED_CACHE = Path.home() / ".cache" / "tokenlean" / "bench"
GPT_CHUNK = 1000  # QQP pairs per GPTCache runner process


class TableEmbedder:
    """The MiniLM vectors computed once, served by text (so both systems see the same vectors)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.dimension = len(next(iter(table.values())))

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.vstack([self.table[t] if t in self.table else self._canonical()[t] for t in texts])

    def _canonical(self) -> dict[str, np.ndarray]:
        """The table by canonical text: a lookup asks with ``RequestKeys.query`` (whitespace tidied)."""
        if not hasattr(self, "_by_canonical"):
            from tokenlean.cache.keys import canonical_text

            self._by_canonical = {canonical_text(t): v for t, v in self.table.items()}
        return self._by_canonical


def load_data(full: bool, size: int) -> dict[str, list[tuple[str, str]]]:
    """QQP test-split duplicate pairs, MRPC label-0 pairs, MRPC test-split label-1 pairs.

    The QQP duplicates come from the test split of bench/qqp_split.py (GPTCache's similiar_qqp
    file, used before, shares texts with the fit split the head was trained on).
    """
    from bench.qqp_split import split_pairs

    duplicates = [(a, b) for a, b, label in split_pairs()["test"] if label == 1]
    mrpc0, mrpc1, mrpc0_test = [], [], []
    for name in ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"):
        lines = (DATA / "cache_paraphrase/mrpc" / name).read_text(encoding="utf-8-sig").splitlines()[1:]
        for line in lines:
            label, _, _, first, second = line.split("\t")
            if label == "0":
                mrpc0.append((first, second))
                if "test" in name:
                    mrpc0_test.append((first, second))
            elif "test" in name:
                mrpc1.append((first, second))
    return {
        "qqp": duplicates if full else duplicates[:size],
        "mrpc0": mrpc0,
        "mrpc0_test": mrpc0_test,
        "mrpc1": mrpc1,
    }


def flip_probes(qqp: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """(stored, asked) pairs whose answers differ: a changed number, a negation, a swapped comparison."""
    numbers: list[tuple[str, str]] = []
    negations: list[tuple[str, str]] = []
    for origin, _ in qqp:
        match = re.search(r"\b\d+\b", origin)
        if match and len(numbers) < 150:
            numbers.append(
                (origin, origin[: match.start()] + str(int(match.group()) + 1) + origin[match.end() :])
            )
        aux = re.search(r"\b(is|are|can|should|will|would|does|do)\b", origin)
        if aux and not re.search(r"\bnot\b|n't", origin) and len(negations) < 150:
            negations.append((origin, origin[: aux.end()] + " not" + origin[aux.end() :]))
    things = [
        "a cat",
        "a dog",
        "Python",
        "Java",
        "Paris",
        "London",
        "the Moon",
        "Mars",
        "gold",
        "silver",
        "tea",
        "coffee",
        "India",
        "China",
        "a car",
        "a bike",
    ]
    adjectives = ["bigger", "better", "faster", "older", "heavier", "cheaper", "more popular"]
    rng = random.Random(1)
    order = []
    for _ in range(80):
        a, b = rng.sample(things, 2)
        adjective = rng.choice(adjectives)
        order.append((f"Is {a} {adjective} than {b}?", f"Is {b} {adjective} than {a}?"))
    originals = {a for a, _ in order}
    order = [(a, b) for a, b in dict.fromkeys(order) if b not in originals]  # asked != any stored text
    return {"numbers": numbers, "negation": negations, "order": order}


def embed_all(texts: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """MiniLM vectors for every text; returns them and how many came from the on-disk cache.

    Vectors are kept in ~/.cache/tokenlean/bench (never committed) so a rerun skips the slow part;
    they are the same vectors a fresh run computes.
    """
    path = EMBED_CACHE / "cache-embeddings.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        stored = np.load(path, allow_pickle=False)
        known = dict(zip(stored["texts"].tolist(), stored["vectors"], strict=True))
    missing = sorted(set(texts) - set(known))
    if missing:
        from tokenlean.embeddings import shared_embedder
        from tokenlean.threads import torch_threads

        # one torch thread: on this shared 2-core box it embeds ~3x faster than torch's default
        # two (OpenMP threads spin against the other processes); the vectors are the same.
        with torch_threads(1):
            known.update(zip(missing, shared_embedder().embed(missing), strict=True))
        EMBED_CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, texts=np.array(list(known)), vectors=np.vstack(list(known.values())))
    wanted = set(texts)
    return {t: v for t, v in known.items() if t in wanted}, len(wanted) - len(missing)


def keys_for(text: str, system: str = SYSTEM, namespace: str = "bench") -> Any:
    from tokenlean.cache.keys import request_keys
    from tokenlean.middleware.types import Message, Request

    request = Request(messages=(Message("system", system), Message("user", text)), model="m", temperature=0)
    return request_keys(request, tenant=None, namespace=namespace)


async def pair_scores(
    sets: dict[str, Any], table: dict[str, np.ndarray], decision: dict[str, Any]
) -> list[tuple[str | None, float]]:
    """The issue's protocol, store one and query the other, with the real lookup: each pair gets its
    own namespace (so its own context and index shard) in one ``ResponseCache``."""
    from tokenlean.cache.semantic import ResponseCache
    from tokenlean.cache.stores.memory import MemoryStore

    cache = ResponseCache(
        MemoryStore(max_entries=10**7, max_bytes=2**40), embedder=TableEmbedder(table), **decision
    )
    for i, (first, _) in enumerate(sets["pairs"]):
        await cache.put(keys_for(first, namespace=f"p{i}"), "own", ttl=None, vector=table[first])
    found: list[tuple[str | None, float]] = []
    for i, (_, second) in enumerate(sets["pairs"]):
        hit = (await cache.lookup(keys_for(second, namespace=f"p{i}"), threshold=-10.0)).hit
        found.append((sets["queries"][i][1], hit.score) if hit else (None, -10.0))
    return found


async def best_candidates(
    stored: list[tuple[str, str]], queries: list[str], table: dict[str, np.ndarray], decision: dict[str, Any]
) -> list[tuple[str | None, float]]:
    """For every query, the answer and score of the real lookup at the lowest possible threshold.

    A lookup at threshold t hits exactly when this best score is >= t (scores only fall below the
    cosine, and the lookup takes the best-scoring of the top-k candidates), so one pass gives the
    whole curve; ``check_consistency`` confirms it against real lookups at set thresholds.
    """
    from tokenlean.cache.semantic import ResponseCache
    from tokenlean.cache.stores.memory import MemoryStore

    cache = ResponseCache(
        MemoryStore(max_entries=10**7, max_bytes=2**40), embedder=TableEmbedder(table), **decision
    )
    for text, answer in stored:
        await cache.put(keys_for(text), answer, ttl=None, vector=table[text])
    found: list[tuple[str | None, float]] = []
    for text in queries:
        hit = (await cache.lookup(keys_for(text), threshold=-10.0)).hit
        found.append((hit.entry.answer, hit.score) if hit else (None, -10.0))
    return found


async def check_consistency(
    stored: list[tuple[str, str]],
    queries: list[str],
    table: dict[str, np.ndarray],
    best: list[tuple[str | None, float]],
    threshold: float,
) -> float:
    """Fraction of queries where a real lookup at ``threshold`` agrees with the one-pass curve."""
    from tokenlean.cache.semantic import ResponseCache
    from tokenlean.cache.stores.memory import MemoryStore

    cache = ResponseCache(MemoryStore(max_entries=10**7, max_bytes=2**40), embedder=TableEmbedder(table))
    for text, answer in stored:
        await cache.put(keys_for(text), answer, ttl=None, vector=table[text])
    agree = 0
    for text, (expected, score) in zip(queries, best, strict=True):
        hit = (await cache.lookup(keys_for(text), threshold=threshold)).hit
        agree += (hit.entry.answer if hit else None) == (expected if score >= threshold else None)
    return agree / len(queries)


def rates(answers: list[str | None], expected: list[str]) -> dict[str, float]:
    """How often the pair's own stored entry answered, and how often another entry did."""
    own = [a == e for a, e in zip(answers, expected, strict=True)]
    other = [a is not None and a != e for a, e in zip(answers, expected, strict=True)]
    return {
        "own": float(np.mean(own)) if own else float("nan"),
        "other": float(np.mean(other)) if other else float("nan"),
    }


def build_sets(data: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """One stored list and one query list for both systems, with the expected answer per query.

    A query whose text is itself stored (MRPC reuses sentences across pairs) is left out: answering
    it from that entry is an exact hit, right by definition, and would blur the false-hit rate.
    """
    stored: dict[str, str] = {}
    for name, prefix in (("qqp", "q"), ("mrpc0", "n"), ("mrpc1", "p")):
        for i, (first, _) in enumerate(data[name]):
            stored.setdefault(first, f"{prefix}{i}")  # a repeated origin keeps its first answer
    segments: dict[str, tuple[int, int]] = {}
    queries: list[tuple[str, str]] = []
    pairs: list[tuple[str, str]] = []
    dropped = 0
    for name in ("qqp", "mrpc0", "mrpc1"):
        start = len(queries)
        for first, second in data[name]:
            if second in stored:
                dropped += 1
                continue
            queries.append((second, stored[first]))
            pairs.append((first, second))
        segments[name] = (start, len(queries))
    test_split = {pair[1] for pair in data["mrpc0_test"]}
    start, end = segments["mrpc0"]
    mask = [queries[i][0] in test_split for i in range(start, end)]
    return {
        "stored": list(stored.items()),
        "queries": queries,
        "pairs": pairs,
        "segments": segments,
        "mrpc0_test_mask": mask,
        "dropped_queries": dropped,
    }


def curve_point(answers: list[str | None], sets: dict[str, Any]) -> dict[str, float]:
    """Duplicate hit rate (QQP), false-hit rate (MRPC label 0, all and test split), paraphrase hits.

    Hits and false hits count the pair's own stored entry answering (the only labelled relation);
    an answer from another entry (possible in the shared cache only) is counted as ``*_other``.
    """
    expected = [e for _, e in sets["queries"]]
    out: dict[str, float] = {}
    for name, (start, end) in sets["segments"].items():
        r = rates(answers[start:end], expected[start:end])
        key = "false_hit" if name == "mrpc0" else f"{name}_hit"
        out[key], out[f"{name}_other"] = r["own"], r["other"]
        if name == "mrpc0":
            own = [a == e for a, e in zip(answers[start:end], expected[start:end], strict=True)]
            test = [h for h, m in zip(own, sets["mrpc0_test_mask"], strict=True) if m]
            out["false_hit_test_split"] = float(np.mean(test)) if test else float("nan")
    return out


def sweep_curve(best: list[tuple[str | None, float]], sets: dict[str, Any]) -> list[dict[str, float]]:
    """The tokenlean curve: one point per cut point in ``SWEEP``."""
    points = []
    for threshold in SWEEP:
        answers = [a if score >= threshold else None for a, score in best]
        points.append({"threshold": threshold, **curve_point(answers, sets)})
    return points


def dominance(
    ours: list[dict[str, float]], theirs: list[dict[str, float]], usable_only: bool
) -> list[dict[str, Any]]:
    """For each GPTCache point: tokenlean's best hit rate at no more false hits; conservative (no interpolation)."""
    rows = []
    for point in theirs:
        candidates = [
            p
            for p in ours
            if p["false_hit"] <= point["false_hit"] and (p["threshold"] > 0 or not usable_only)
        ]
        best = max((p["qqp_hit"] for p in candidates), default=0.0)
        rows.append(
            {
                "gptcache_threshold": point["threshold"],
                "gptcache_false_hit": point["false_hit"],
                "gptcache_hit": point["qqp_hit"],
                "tokenlean_hit": best,
                "above": best >= point["qqp_hit"],
            }
        )
    return rows


def run_gptcache(
    table: dict[str, np.ndarray], sets: dict[str, Any], probes: dict[str, Any]
) -> dict[str, Any]:
    """GPTCache in its own venv, fed the same vectors; answers per threshold come back as JSON."""
    if not GPTCACHE_PY.exists():
        raise SystemExit("GPTCache venv missing: run bash bench/setup_gptcache.sh first")
    texts = list(table)
    spec = {
        "texts": texts,
        "stored": sets["stored"],
        "queries": [[q, e] for q, e in sets["queries"]],
        "pairs": sets["pairs"],
        "thresholds": GPT_THRESHOLDS,
        "probes": probes,
    }
    # GPTCache commits to SQLite on every get (an fsync each, ~25 ms on this disk) and its faiss
    # flat search spins OpenMP threads per query on a busy machine; a tmpfs folder and one OpenMP
    # thread make it ~5x faster. Both only help the peer; neither changes what it returns.
    shm = Path("/dev/shm")
    work = Path(tempfile.mkdtemp(prefix="bench-gptcache-", dir=shm if shm.is_dir() else None))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        np.savez(work / "in.npz", vectors=np.vstack([table[t] for t in texts]).astype(np.float32))
        (work / "in.json").write_text(json.dumps(spec))
        subprocess.run(
            [
                str(GPTCACHE_PY),
                "-m",
                "bench.gptcache_runner",
                str(work / "in.npz"),
                str(work / "in.json"),
                str(work / "out.json"),
                str(work / "data"),
            ],
            cwd=ROOT,
            check=True,
            timeout=3600,
            env=env,
        )
        return dict(json.loads((work / "out.json").read_text()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def guards() -> dict[str, dict[str, Any]]:
    """``ResponseCache`` settings per decision: the learnt head (default), the earlier guard rule
    and its ablations (what each part is worth)."""
    from tokenlean.cache.guard import MeaningGuard

    off = {"numbers": False, "negation": False, "order": False, "direction": False}
    return {
        "tokenlean": {"decision": "learned"},
        "guard rule (earlier default)": {"decision": "guard", "guard": MeaningGuard()},
        "vetoes only": {"decision": "guard", "guard": MeaningGuard(novelty_penalty=0.0)},
        "novelty only": {"decision": "guard", "guard": MeaningGuard(**off)},
        "no guard (plain cosine)": {"decision": "guard", "guard": MeaningGuard(novelty_penalty=0.0, **off)},
    }


async def probe_rates(
    probes: dict[str, list[tuple[str, str]]], table: dict[str, np.ndarray], threshold: float
) -> dict[str, float]:
    """Tokenlean's false-hit rate on each flip family, and across system prompts, at ``threshold``."""
    out = {}
    for name, pairs in probes.items():
        best = await best_candidates(
            [(s, f"s{i}") for i, (s, _) in enumerate(pairs)],
            [a for _, a in pairs],
            table,
            guards()["tokenlean"],
        )
        out[name] = float(np.mean([score >= threshold for _, score in best]))
    out["context"] = await context_probe(probes["negation"], table, threshold)
    return out


async def context_probe(
    pairs: list[tuple[str, str]], table: dict[str, np.ndarray], threshold: float
) -> float:
    """The very same question under another system prompt: any hit is a wrong-context answer."""
    from tokenlean.cache.semantic import ResponseCache
    from tokenlean.cache.stores.memory import MemoryStore

    cache = ResponseCache(MemoryStore(), embedder=TableEmbedder(table))
    for i, (text, _) in enumerate(pairs):
        await cache.put(keys_for(text, "Answer in French."), f"s{i}", ttl=None, vector=table[text])
    hits = [
        (await cache.lookup(keys_for(text, "Answer in German."), threshold=threshold)).hit
        for text, _ in pairs
    ]
    return float(np.mean([h is not None for h in hits]))


async def tokenlean_side(sets: dict[str, Any], table: dict[str, np.ndarray]) -> dict[str, Any]:
    """Pairwise curves for the guard and its ablations; shared-cache curves; a consistency check."""
    queries = [q for q, _ in sets["queries"]]
    curves: dict[str, list[dict[str, float]]] = {}
    for name, decision in guards().items():
        curves[name] = sweep_curve(await pair_scores(sets, table, decision), sets)
    shared: dict[str, list[dict[str, float]]] = {}
    best_main: list[tuple[str | None, float]] = []
    for name in ("tokenlean", "no guard (plain cosine)"):
        best = await best_candidates(sets["stored"], queries, table, guards()[name])
        shared[name] = sweep_curve(best, sets)
        best_main = best if name == "tokenlean" else best_main
    agree = {
        str(t): await check_consistency(sets["stored"], queries, table, best_main, t) for t in (0.5, DEFAULT)
    }
    return {"curves": curves, "shared": shared, "consistency": agree}


def gptcache_points(
    answers_by_threshold: dict[str, list[Any]], sets: dict[str, Any], pairwise: bool
) -> list[dict[str, float]]:
    """GPTCache's measured curve: one point per threshold it ran at."""
    points = []
    for t, answers in answers_by_threshold.items():
        if pairwise:  # each pair in its own cache: a hit can only be the pair's own entry
            answers = [
                e if a is not None else None for a, (_, e) in zip(answers, sets["queries"], strict=True)
            ]
        points.append(
            {"threshold": float(t), "cosine_equivalent": 2 * float(t) - 1, **curve_point(answers, sets)}
        )
    return points


def figures(
    data: dict[str, Any],
    sets: dict[str, Any],
    ours: dict[str, Any],
    gpt: dict[str, Any] | None,
    probes: dict[str, Any],
    latency: dict[str, Any],
) -> dict[str, Any]:
    """The MRPC-protocol figures (pairwise: store one, ask the other) and the shared-cache figures."""
    curve = ours["curves"]["tokenlean"]
    theirs = gptcache_points(gpt["pairwise"]["answers"], sets, pairwise=True) if gpt else []
    shared = {
        "curves": ours["shared"],
        "tokenlean_at_default": point_at(ours["shared"]["tokenlean"], DEFAULT),
    }
    if gpt:
        shared["gptcache_points"] = gptcache_points(gpt["main"]["answers"], sets, pairwise=False)
    return {
        "sizes": {k: len(v) for k, v in data.items()},
        "stored_entries": len(sets["stored"]),
        "queries": {k: e - s for k, (s, e) in sets["segments"].items()},
        "dropped_queries": sets["dropped_queries"],
        "tokenlean_at_2pct": at_most(curve, 0.02),
        "tokenlean_default_threshold": point_at(curve, DEFAULT),
        "guard_rule_at_0.7": point_at(ours["curves"]["guard rule (earlier default)"], 0.7),
        "guard_rule_at_2pct": at_most(ours["curves"]["guard rule (earlier default)"], 0.02),
        "plain_cosine_at_2pct": at_most(ours["curves"]["no guard (plain cosine)"], 0.02),
        "gptcache_points": theirs,
        "dominance_full_curve": dominance(curve, theirs, False),
        "dominance_thresholds_in_0_1": dominance(curve, theirs, True),
        "shared_cache": shared,
        "consistency_with_real_lookups": ours["consistency"],
        "probes": probes,
        "latency": latency,
        "curves": ours["curves"],
    }


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's goals, computed from the near-miss figures (QQP test split, MRPC) and latency."""
    near = result["near_miss"]
    test, mrpc = near["test"], near["mrpc"]
    learned = {p["false_hit"]: p["hit"] for p in test["curves"]["learned (head)"]}
    lookups = result["latency"]["lookup"]
    largest = max(lookups, key=int)
    out = [
        goal(
            "QQP test: duplicates hit at <=2% false hits",
            ">= 40%",
            round(learned[0.02], 4),
            lambda v: v >= 0.40,
        ),
        goal(
            "QQP test: duplicates hit at <=0.5% false hits",
            ">= 20%",
            round(learned[0.005], 4),
            lambda v: v >= 0.20,
        ),
    ]
    for name, part in (("QQP test", test), ("MRPC test", mrpc)):
        rows = part["vs_plain_cosine"]
        grid = f"rates in {FALSE_HIT_GRID[0]}..{FALSE_HIT_GRID[-1]}"
        out.append(all_above(f"{name}: above plain cosine at every false-hit rate", rows, grid))
    out.append(
        all_above("QQP test: above GPTCache at every one of its points", test["gptcache_points"], "points")
    )
    out.append(
        all_above(
            "MRPC test: no worse than today (the earlier guard rule) at every false-hit rate",
            mrpc["vs_guard"],
            "rates",
        )
    )
    default = test["at_default"]
    out.append(
        goal(
            f"default threshold {near['default_threshold']} (val bootstrap rule): false hits on QQP test",
            "<= 1%",
            round(default["false_hit"], 4),
            lambda v: v <= 0.01,
        )
    )
    out.append(
        goal(
            f"lookup p50 at {largest} entries, excluding the query embedding",
            "<= 2 ms",
            round(lookups[largest]["p50_ms"], 3),
            lambda v: v <= 2.0 and int(largest) >= 100_000,
        )
    )
    return out


def all_above(name: str, rows: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    """A goal met when every compared row is ``above`` (achieved: how many are)."""
    return goal(name, f"all {len(rows)} {unit}", sum(r["above"] for r in rows), all(r["above"] for r in rows))


def point_at(curve: list[dict[str, float]], threshold: float) -> dict[str, float]:
    """The curve's point at ``threshold``."""
    return next(p for p in curve if abs(p["threshold"] - threshold) < 1e-9)


def gptcache_probe_rates(gpt: dict[str, Any]) -> dict[str, dict[str, float]]:
    """GPTCache's false-hit rate per flip family, per threshold."""
    return {
        name: {
            t: float(np.mean([a is not None for a in answers])) for t, answers in family["answers"].items()
        }
        for name, family in gpt["families"].items()
    }


def gpt_probe_spec(flips: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """The flip probes in the GPTCache runner's format (plus the other-system-prompt probe)."""
    spec: dict[str, Any] = {
        n: {"stored": [[s, f"s{i}"] for i, (s, _) in enumerate(p)], "queries": [[a, None] for _, a in p]}
        for n, p in flips.items()
    }
    spec["context"] = {
        "stored": [[s, f"s{i}"] for i, (s, _) in enumerate(flips["negation"])],
        "queries": [[s, None] for s, _ in flips["negation"]],
        "systems": ["Answer in French.", "Answer in German."],
    }
    return spec


def gptcache_on_qqp_cached(
    table: dict[str, np.ndarray], pairs: list[tuple[str, str, int]], run: bool
) -> dict[str, Any] | None:
    """``gptcache_on_qqp`` for ``pairs``, kept on disk (keyed by the pairs) next to the embeddings:
    the whole test split takes GPTCache ~30 min pairwise, and its answers do not depend on our
    decision, so ``--quick`` reuses a real run when one exists (``run`` False: never start one)."""
    import hashlib

    key = hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()[:16]
    path = EMBED_CACHE / f"gptcache-qqp-{key}.json"
    if path.exists():
        measured = dict(json.loads(path.read_text()))
        for point in measured["points"]:  # runs before the key was renamed
            point.setdefault("gptcache_threshold", point.pop("threshold", None))
        return measured
    if not run or not GPTCACHE_PY.exists():
        return None
    measured = gptcache_on_qqp(table, pairs)
    EMBED_CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(measured))
    return measured


def gptcache_on_qqp(table: dict[str, np.ndarray], pairs: list[tuple[str, str, int]]) -> dict[str, Any]:
    """GPTCache run for real, pairwise, on QQP test pairs: its measured rates per threshold."""
    answers: dict[str, list[Any]] = {}
    for start in range(0, len(pairs), GPT_CHUNK):
        # one runner process per chunk: GPTCache keeps ~1.5 MB per closed cache alive (the runner
        # reached 14 GB and was killed by the OOM killer after ~9,000 pairs in one process)
        chunk = pairs[start : start + GPT_CHUNK]
        sets = {
            "stored": [],
            "queries": [[b, "stored"] for _, b, _ in chunk],
            "pairs": [[a, b] for a, b, _ in chunk],
        }
        texts = {t for a, b, _ in chunk for t in (a, b)}
        part = run_gptcache({t: table[t] for t in texts}, sets, {})["pairwise"]["answers"]
        for t, row in part.items():
            answers.setdefault(t, []).extend(row)
        print(f"GPTCache pairwise: {start + len(chunk)} / {len(pairs)} pairs", flush=True)
    labels = np.array([label for *_, label in pairs])
    out = []
    for t, row in answers.items():
        hit = np.array([a is not None for a in row])
        out.append(
            {
                "gptcache_threshold": float(t),
                "hit": float(hit[labels == 1].mean()),
                "false_hit": float(hit[labels == 0].mean()),
            }
        )
    return {"pairs": len(pairs), "points": out}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.qqp_split import split_pairs

    data = load_data(args.full, args.size)
    if args.smoke:  # plumbing check only: the figures of a smoke run mean nothing
        data = {k: v[:60] for k, v in data.items()}
    whole = split_pairs()
    splits = {"val": whole["val"][: args.val_pairs], "test": whole["test"][: args.test_pairs]}
    mrpc = mrpc_test()
    sets = build_sets(data)
    flips = flip_probes(data["qqp"])
    texts = [t for pair in (*data["qqp"], *data["mrpc0"], *data["mrpc1"]) for t in pair]
    texts += [t for pairs in flips.values() for pair in pairs for t in pair]
    table, cached = embed_all(texts + texts_of(splits["val"], splits["test"], mrpc))
    print(f"{len(table)} texts embedded ({cached} from the on-disk cache)", flush=True)
    started = time.perf_counter()
    measured = gptcache_on_qqp_cached(table, splits["test"], run=not args.quick)
    print(f"GPTCache on the QQP test split: {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    near = await near_miss(splits, mrpc, table, measured["points"] if measured else None)
    if measured:
        near["gptcache_run_on_test"] = measured
    print(f"near-miss part: {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    ours = await tokenlean_side(sets, table)
    print(f"tokenlean curves: {time.perf_counter() - started:.0f} s", flush=True)
    gpt = None
    if not args.quick:
        started = time.perf_counter()
        gpt = run_gptcache(table, sets, gpt_probe_spec(flips))
        print(f"GPTCache: {time.perf_counter() - started:.0f} s", flush=True)
    probes: dict[str, Any] = {
        "sizes": {k: len(v) for k, v in flips.items()},
        "tokenlean_at_default": await probe_rates(flips, table, DEFAULT),
    }
    if gpt:
        probes["gptcache"] = gptcache_probe_rates(gpt)
    queries = [q for q, _ in sets["queries"][:1000]]
    sizes = (1_000, 5_000) if args.smoke else (10_000, 100_000)
    latency = {
        "lookup": await lookup_latency(table, queries, sizes),
        "index_growth": growth_stall(sizes[-1]),
        "index_recall": index_recall(
            table, [(a, b) for a, b, label in splits["val"] if label == 1], sizes[-1], (4, 8, 16, 32)
        ),
        "embed": embed_latency(queries[:100]),
    }
    if gpt:
        gets = gpt["main"]["get_ms"]
        latency["gptcache_get"] = {"p50_ms": median(gets), "p99_ms": percentile(gets, 99)}
    latency["proxy"] = await proxy_latency() if not (args.no_proxy or args.quick) else {}
    result = figures(data, sets, ours, gpt, probes, latency)
    result["near_miss"] = near
    result["gptcache_version"] = gpt["gptcache_version"] if gpt else "not run (--quick)"
    result["embeddings_from_disk_cache"] = cached
    result["goals"] = goals(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="every held-out QQP pair instead of --size")
    parser.add_argument("--size", type=int, default=2000, help="held-out QQP pairs in the default run")
    parser.add_argument(
        "--no-proxy", action="store_true", help="skip the end-to-end proxy latency (no model)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="60 pairs per set, small latency runs: plumbing only"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="no new GPTCache run (a cached QQP test run is reused, else its points are derived), no proxy",
    )
    parser.add_argument("--val-pairs", type=int, default=None, help="first N validation pairs (default all)")
    parser.add_argument("--test-pairs", type=int, default=None, help="first N test pairs (default all)")
    args = parser.parse_args()
    started = time.time()
    result = asyncio.run(run(args))
    result["run_s"] = round(time.time() - started, 1)
    result["command"] = " ".join(["python -m bench.cache", *sys.argv[1:]])
    result["environment"] = environment(["gptcache", "redis"])
    result["table"] = report(result)
    path = write_results("cache-smoke" if args.smoke else "cache", result)
    plot(result, path.with_suffix(".png"))
    for g in result["goals"]:
        print(f"goal {g['name']}: {g['achieved']} ({g['target']}) -> {'met' if g['met'] else 'NOT met'}")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
