"""Selection on the real MiniLM embedder: paraphrases found, duplicates avoided, order, balance, budget."""

from __future__ import annotations

import itertools
import math

import pytest

from tests.demos.conftest import DISTRACTORS, PARAPHRASES
from tokenlean.errors import ConfigError
from tokenlean.selectors import DemoPool, Example, SelectionConfig, select


def test_nearest_demonstration_is_the_close_paraphrase(paraphrase_pool: DemoPool, embedder) -> None:  # type: ignore[no-untyped-def]
    queries = [query for _, _, query in PARAPHRASES]
    for position, (query, vector) in enumerate(zip(queries, embedder.embed(queries), strict=True)):
        selection = select(paraphrase_pool, query, SelectionConfig(k=3), query_vector=vector)
        assert selection.ids[-1] == position, (query, [e.input for e in selection.examples])
        # the paraphrase is clearly closer than the best unrelated example
        assert selection.scores[-1] - selection.scores[-2] > 0.05


def test_knn_order_puts_the_most_similar_last(paraphrase_pool: DemoPool) -> None:
    selection = select(paraphrase_pool, PARAPHRASES[0][2], SelectionConfig(k=6))
    assert list(selection.scores) == sorted(selection.scores)
    again = select(paraphrase_pool, PARAPHRASES[0][2], SelectionConfig(k=6))
    assert again.ids == selection.ids


@pytest.fixture(scope="module")
def duplicate_pool(embedder) -> DemoPool:  # type: ignore[no-untyped-def]
    """Near-identical groups (punctuation and case changes; MiniLM cosine 0.94-1.0) among unrelated ones."""
    texts = [
        "The cat sat on the mat.",
        "The cat sat on the mat!",
        "the cat sat on the mat",
        "Cats love sitting on mats.",
        "Dogs chase balls in the park.",
        "Dogs chase balls in the park!",
        "The stock market fell sharply today.",
        "The stock market fell sharply today",
        "A kitten is sleeping on a rug.",
        "Parliament passed the new budget.",
    ]
    return DemoPool.build("dups", [Example(t, "x") for t in texts], embedder=embedder)


def _max_pair_cosine(pool: DemoPool, ids: tuple[int, ...]) -> float:
    pairs = itertools.combinations(ids, 2)
    return max((float(pool.vectors[a] @ pool.vectors[b]) for a, b in pairs), default=0.0)


def test_knn_does_pick_near_duplicates_so_the_mmr_test_means_something(duplicate_pool: DemoPool) -> None:
    selection = select(duplicate_pool, "a cat sitting on a mat", SelectionConfig(k=3, method="knn"))
    assert _max_pair_cosine(duplicate_pool, selection.ids) >= 0.9


@pytest.mark.parametrize("lam", [0.3, 0.5, 0.8, 1.0])
def test_mmr_never_returns_two_near_identical_examples(
    duplicate_pool: DemoPool, embedder, lam: float
) -> None:  # type: ignore[no-untyped-def]
    queries = ["a cat sitting on a mat", "dogs playing with a ball", "markets dropped", "budget vote"]
    vectors = dict(zip(queries, embedder.embed(queries), strict=True))
    for query, k in itertools.product(queries, [2, 3, 5, 20]):
        config = SelectionConfig(k=k, method="mmr", mmr_lambda=lam)
        selection = select(duplicate_pool, query, config, query_vector=vectors[query])
        assert _max_pair_cosine(duplicate_pool, selection.ids) < 0.9, (query, k, selection.ids)
    # every near-identical group contributes one member, everything distinct is still reachable
    everything = select(duplicate_pool, "cats", SelectionConfig(k=20, method="mmr", mmr_lambda=lam))
    assert len(everything.ids) == 6


@pytest.mark.parametrize("method", ["knn", "mmr", "random"])
def test_k_larger_than_the_pool_returns_the_whole_pool(paraphrase_pool: DemoPool, method: str) -> None:
    selection = select(paraphrase_pool, "anything at all", SelectionConfig(k=500, method=method))
    assert sorted(selection.ids) == list(range(len(paraphrase_pool)))


def test_random_is_deterministic_per_query_and_seed(sst2_pool: DemoPool) -> None:
    first = select(sst2_pool, "a fine film", SelectionConfig(k=4, method="random"))
    assert first.ids == select(sst2_pool, "a fine film", SelectionConfig(k=4, method="random")).ids
    assert first.ids != select(sst2_pool, "a fine film", SelectionConfig(k=4, method="random", seed=1)).ids
    assert all(math.isnan(s) for s in first.scores) and first.embed_ms == 0.0


def test_label_balance_takes_each_label_in_turn(sst2_pool: DemoPool, embedder) -> None:  # type: ignore[no-untyped-def]
    queries = [
        "a dreadful, boring mess of a movie",
        "a warm, funny and moving film",
        "the plot",
        "the actors",
    ]
    skewed = 0
    for query, vector in zip(queries, embedder.embed(queries), strict=True):
        plain = select(sst2_pool, query, SelectionConfig(k=4), query_vector=vector)
        balanced = select(sst2_pool, query, SelectionConfig(k=4, balance=True), query_vector=vector)
        assert sorted(e.label for e in balanced.examples) == ["negative", "negative", "positive", "positive"]
        assert list(balanced.scores) == sorted(balanced.scores)
        skewed += [e.label for e in plain.examples].count("negative") != 2
    assert skewed >= 1  # without balance at least one query gets a lopsided set


def test_token_budget_fits_as_many_as_possible(sst2_pool: DemoPool) -> None:
    from tokenlean.tokens import shared_token_counter

    counter = shared_token_counter()

    def cost(example: Example) -> int:
        return counter.count(example.input) + counter.count(example.output)

    small = select(sst2_pool, "a moving story", SelectionConfig(k=None, budget=60), cost=cost)
    large = select(sst2_pool, "a moving story", SelectionConfig(k=None, budget=400), cost=cost)
    assert 0 < small.tokens <= 60 and 0 < large.tokens <= 400
    assert small.tokens == sum(cost(e) for e in small.examples)
    assert len(large.ids) > len(small.ids)
    both = select(sst2_pool, "a moving story", SelectionConfig(k=2, budget=400), cost=cost)
    assert len(both.ids) == 2
    with pytest.raises(ConfigError):
        select(sst2_pool, "x", SelectionConfig(k=None, budget=10))


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ConfigError, match="method"):
        SelectionConfig(method="bm25")
    with pytest.raises(ConfigError):
        SelectionConfig(k=None, budget=None)
    with pytest.raises(ConfigError, match="mmr_lambda"):
        SelectionConfig(mmr_lambda=1.5)


def test_distractors_are_really_on_the_same_topics() -> None:
    # guards the paraphrase test: without same-topic distractors it would be too easy
    assert {label for _, label in DISTRACTORS} & {label for _, label, _ in PARAPHRASES} >= {
        "account",
        "person",
    }
