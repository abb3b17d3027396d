"""ScopedIndex: contexts never mix, removal is real, the IVF switch keeps finding neighbours."""

from __future__ import annotations

import numpy as np

from tokenlean.cache.index import ScopedIndex


def unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    normalised: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return normalised


def test_search_stays_inside_its_context() -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng, 2)
    index = ScopedIndex(32)
    index.add("a", "ctx-1", vectors[0], "question a")
    index.add("b", "ctx-2", vectors[0], "question b")  # the very same vector, another context
    assert [(k, q) for k, _, q in index.search("ctx-1", vectors[0], 4)] == [("a", "question a")]
    assert index.search("ctx-3", vectors[0], 4) == []
    index.remove("a")
    assert index.search("ctx-1", vectors[0], 4) == [] and len(index) == 1


def test_ivf_shard_finds_true_neighbours_and_removes_for_real() -> None:
    rng = np.random.default_rng(1)
    data = unit(rng, 3000)
    index = ScopedIndex(32, ivf_from=500, nprobe=16)
    index.add_many([(f"k{i}", "c", data[i], "") for i in range(3000)])
    queries = data[:200] + 0.05 * unit(rng, 200)
    found = sum(index.search("c", q, 1)[0][0] == f"k{i}" for i, q in enumerate(queries))
    assert found >= 190  # approximate, but close to exact on near-duplicates
    for i in range(100):
        index.remove(f"k{i}")
    assert all(index.search("c", data[i], 3)[0][0] != f"k{i}" for i in range(100))
    index.add("k0", "c", data[0])  # re-added after removal
    assert index.search("c", data[0], 1)[0][0] == "k0"


def test_replayed_records_are_idempotent() -> None:
    vector = unit(np.random.default_rng(2), 1)[0]
    index = ScopedIndex(32)
    for _ in range(3):
        index.add_many([("a", "c", vector, "q")])
    assert len(index) == 1 and len(index.search("c", vector, 4)) == 1
