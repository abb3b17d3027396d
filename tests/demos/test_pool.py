"""DemoPool: loaders, index kinds, persistence without re-embedding, incremental add."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.demos.conftest import PARAPHRASES
from tokenlean.errors import ConfigError
from tokenlean.selectors import DemoPool, Example, SelectionConfig, load_examples, select


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.path, self.dimension, self.texts = inner, inner.path, inner.dimension, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)  # type: ignore[no-any-return]


QUERIES = ["a gripping thriller", "dull and lifeless", "the best comedy of the year", "an overlong mess"]


def _selections(pool: DemoPool, vectors: np.ndarray) -> list[tuple[int, ...]]:
    configs = [SelectionConfig(k=5), SelectionConfig(k=5, method="mmr"), SelectionConfig(k=4, balance=True)]
    return [
        select(pool, q, c, query_vector=v).ids for q, v in zip(QUERIES, vectors, strict=True) for c in configs
    ]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_persistence_round_trip_gives_the_same_selections(
    sst2_pool: DemoPool,
    embedder,
    tmp_path: Path,
    kind: str,  # type: ignore[no-untyped-def]
) -> None:
    pool = DemoPool("sst2", sst2_pool.examples, sst2_pool.vectors, embedder=embedder, index=kind)
    assert pool.index_kind == kind
    vectors = embedder.embed(QUERIES)
    before = _selections(pool, vectors)
    pool.save(tmp_path / "pool")
    counting = CountingEmbedder(embedder)
    loaded = DemoPool.load(tmp_path / "pool", embedder=counting)
    assert loaded.index_kind == kind and len(loaded) == len(pool) and loaded.name == "sst2"
    assert _selections(loaded, vectors) == before
    assert counting.texts == 0  # nothing was re-embedded
    select(loaded, QUERIES[0], SelectionConfig(k=2))
    assert counting.texts == 1  # only the query


def test_add_updates_the_index_and_survives_a_save(sst2_pool: DemoPool, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool = DemoPool("sst2", sst2_pool.examples, sst2_pool.vectors, embedder=embedder, index="hnsw")
    text, label, query = PARAPHRASES[4]
    pool.add([Example(text, label, label)])
    assert len(pool) == len(sst2_pool) + 1
    assert select(pool, query, SelectionConfig(k=1)).examples[0].input == text
    loaded = DemoPool.load(pool.save(tmp_path / "grown"), embedder=embedder)
    assert select(loaded, query, SelectionConfig(k=1)).examples[0].input == text


def test_auto_index_is_exact_when_small_and_approximate_above_the_threshold(
    sst2_pool: DemoPool, embedder
) -> None:  # type: ignore[no-untyped-def]
    examples, vectors = sst2_pool.examples, sst2_pool.vectors
    assert DemoPool("a", examples, vectors, embedder=embedder).index_kind == "flat"
    assert DemoPool("b", examples, vectors, embedder=embedder, exact_threshold=100).index_kind == "hnsw"
    growing = DemoPool("c", examples[:90], vectors[:90], embedder=embedder, exact_threshold=100)
    assert growing.index_kind == "flat"
    growing.add(examples[90:120])
    assert growing.index_kind == "hnsw" and len(growing) == 120
    exact = DemoPool("d", examples[:120], vectors[:120], embedder=embedder, index="flat")
    query = embedder.embed(["a charming film"])[0]
    assert (
        select(growing, "", SelectionConfig(k=3), query_vector=query).ids
        == select(exact, "", SelectionConfig(k=3), query_vector=query).ids
    )


def test_loaders_read_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "demos.jsonl"
    jsonl.write_text(
        json.dumps({"input": "2+2?", "output": "4"})
        + "\n\n"
        + json.dumps({"text": "x", "label": "pos"})
        + "\n"
    )
    with pytest.raises(ConfigError, match="row 2"):
        load_examples(jsonl)
    jsonl.write_text(json.dumps({"text": "great", "label": "positive"}) + "\n")
    assert load_examples(jsonl, input_key="text") == [Example("great", "positive", "positive")]
    csv = tmp_path / "demos.csv"
    csv.write_text('input,output,label\n"Hello, there",hi,greet\n')
    assert load_examples(csv) == [Example("Hello, there", "hi", "greet")]
    (tmp_path / "demos.txt").write_text("input\nx\n")
    with pytest.raises(ConfigError, match="jsonl or .csv"):
        load_examples(tmp_path / "demos.txt")


def test_a_pool_from_another_embedder_is_refused(sst2_pool: DemoPool, tmp_path: Path) -> None:
    sst2_pool.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    meta["embedder"] = "some-other/model"
    (tmp_path / "p" / "meta.json").write_text(json.dumps(meta))
    loaded = DemoPool.load(tmp_path / "p")
    with pytest.raises(ConfigError, match="some-other/model"):
        loaded.embed_query("hello")
