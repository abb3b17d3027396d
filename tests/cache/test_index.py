"""ScopedIndex: contexts never mix, removal is real, the IVF switch keeps finding neighbours, and a
retrain in the worker thread loses no add or removal made while it trained."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

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
    index.settle()  # the IVF index trained in the worker is now the one searched
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


@pytest.fixture
def held_worker() -> Iterator[tuple[ThreadPoolExecutor, threading.Event]]:
    """A one-thread executor kept busy until the event is set: a retrain queues behind it."""
    gate = threading.Event()
    executor = ThreadPoolExecutor(max_workers=1)
    executor.submit(gate.wait)
    yield executor, gate
    gate.set()
    executor.shutdown(wait=True)


@pytest.mark.parametrize(
    "inline", [1024, 10], ids=["replayed-by-the-adopting-call", "caught-up-in-the-worker"]
)
def test_changes_made_while_a_retrain_runs_survive_the_swap(
    held_worker: tuple[ThreadPoolExecutor, threading.Event], inline: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokenlean.cache.index.CATCH_UP_INLINE", inline)  # 150 changes: under / over
    executor, gate = held_worker
    data = unit(np.random.default_rng(3), 700)
    index = ScopedIndex(32, ivf_from=500, nprobe=64, executor=executor)
    index.add_many([(f"k{i}", "c", data[i], "") for i in range(600)])  # starts a retrain (held)
    index.add_many([(f"k{i}", "c", data[i], "") for i in range(600, 700)])
    for i in range(50):
        index.remove(f"k{i}")
    assert index.search("c", data[650], 1)[0][0] == "k650"  # the old (flat) index serves meanwhile
    gate.set()
    index.settle()
    assert index._shards["c"].trained_at == 600  # the IVF index trained on the first 600 is in use
    assert len(index) == 650
    assert all(index.search("c", data[i], 1)[0][0] == f"k{i}" for i in range(50, 700))
    for i in range(50):
        found = [key for key, _, _ in index.search("c", data[i], 3)]
        assert len(found) == 3 and f"k{i}" not in found  # gone from the new index, not only hidden


def test_a_shard_emptied_while_it_retrains_stays_empty(
    held_worker: tuple[ThreadPoolExecutor, threading.Event],
) -> None:
    executor, gate = held_worker
    data = unit(np.random.default_rng(4), 600)
    index = ScopedIndex(32, ivf_from=500, executor=executor)
    index.add_many([(f"k{i}", "c", data[i], "") for i in range(600)])
    for i in range(600):
        index.remove(f"k{i}")
    gate.set()
    index.settle()
    assert index.search("c", data[0], 4) == [] and len(index) == 0
    index.add("k0", "c", data[0])
    assert index.search("c", data[0], 1)[0][0] == "k0"
