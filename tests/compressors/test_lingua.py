"""LinguaCompressor on the real SmolLM2 and real data: budgets, protected spans, answer survival."""

from __future__ import annotations

import re

import pytest

from tokenlean.compressors import LinguaCompressor, RandomDropCompressor
from tokenlean.tokens import shared_token_counter

from .conftest import GSM8K_PROMPT, contains_answer, hotpot_documents, hotpot_test_subset

pytestmark = pytest.mark.slow


def _context(result) -> str:  # type: ignore[no-untyped-def]
    return "\n\n".join(b for b in result.blocks if b)


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_question_mode_meets_the_rate(compressor: LinguaCompressor, hotpot_sample, rate: float) -> None:  # type: ignore[no-untyped-def]
    result = compressor.compress(
        hotpot_documents(hotpot_sample), question=hotpot_sample["question"], rate=rate
    )
    count = shared_token_counter().count
    assert result.origin_tokens == count(
        "\n\n".join([*hotpot_documents(hotpot_sample), hotpot_sample["question"]])
    )
    assert result.compressed_tokens == count(result.prompt)
    assert abs(result.compressed_tokens / result.origin_tokens - rate) <= 0.15 * rate
    assert result.prompt.endswith(hotpot_sample["question"])
    assert 0 < len(result.kept_blocks) <= 10 and result.details["rank_ms"] > 0


def test_plain_mode_meets_a_token_target_and_keeps_numbers_whole(compressor: LinguaCompressor) -> None:
    demos = [d for d in GSM8K_PROMPT.read_text().split("\n\n") if d.strip()][:3]
    result = compressor.compress(demos, target_tokens=200, mode="plain")
    assert abs(result.compressed_tokens - 200) <= 30
    original_numbers = set(re.findall(r"\d[\d,.]*\d|\d", "\n".join(demos)))
    for number in re.findall(r"\d[\d,.]*\d|\d", result.prompt):  # a number is kept whole or dropped whole
        assert number.rstrip(".,") in {n.rstrip(".,") for n in original_numbers}
    assert set(result.prompt.split()) <= set("\n".join(demos).split())  # never half a word


def test_bm25_ranking_scores_only_the_kept_blocks(
    compressor: LinguaCompressor, hotpot_sample, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """``ranking="bm25"``: the same budget and guarantees, with the LM reading the kept blocks only."""
    lexical = LinguaCompressor(scorer=compressor.scorer, ranking="bm25")
    documents, question = hotpot_documents(hotpot_sample), hotpot_sample["question"]
    scored: list[int] = []
    original = compressor.scorer.score_blocks

    def counting(blocks, suffix=()):  # type: ignore[no-untyped-def]
        scored.extend(len(block) + len(suffix) for block in blocks)
        return original(blocks, suffix)

    monkeypatch.setattr(compressor.scorer, "score_blocks", counting)
    result = lexical.compress(documents, question=question, rate=0.5)
    assert abs(result.compressed_tokens / result.origin_tokens - 0.5) <= 0.075
    assert result.prompt.endswith(question) and 0 < len(result.kept_blocks) < len(documents)
    # one pass per block the coarse level kept (one may render empty), none for the dropped ones
    assert len(result.kept_blocks) <= len(scored) < len(documents)
    lexical_tokens, scored[:] = sum(scored), []
    compressor.compress(documents, question=question, rate=0.5)
    assert len(scored) == len(documents) and sum(scored) > 1.5 * lexical_tokens


def test_question_and_protected_spans_survive_verbatim(compressor: LinguaCompressor, hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    compressor = LinguaCompressor(scorer=compressor.scorer, protect_numbers=True)
    documents = hotpot_documents(hotpot_sample)
    phrase = " ".join(documents[-1].split()[3:9])  # six words from the middle of the last document
    result = compressor.compress(documents, question=hotpot_sample["question"], rate=0.2, protect=[phrase])
    assert phrase in result.prompt
    assert hotpot_sample["question"] in result.prompt
    for number in re.findall(r"\d[\d,.]*\d", "\n".join(documents)):
        assert number in result.prompt


def test_answers_survive_3x_better_than_random_dropping(compressor: LinguaCompressor) -> None:
    samples = hotpot_test_subset(8)
    ours = baseline = 0
    random_drop = RandomDropCompressor(seed=1)
    for sample in samples:
        documents, question = hotpot_documents(sample), sample["question"]
        ours += contains_answer(
            sample["answer"], _context(compressor.compress(documents, question=question, rate=1 / 3))
        )
        baseline += contains_answer(
            sample["answer"], _context(random_drop.compress(documents, question=question, rate=1 / 3))
        )
    assert ours > baseline and ours >= 5, (ours, baseline)


def test_concurrent_compressions_give_the_serial_results(compressor: LinguaCompressor) -> None:
    """Concurrent requests share one scorer (each with its own KV cache): a request's result is
    the one it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    samples = hotpot_test_subset(3, seed=11)

    def compress(sample: dict) -> str:  # type: ignore[type-arg]
        return compressor.compress(hotpot_documents(sample), question=sample["question"], rate=0.5).prompt

    alone = [compress(s) for s in samples]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(compress, samples))
    assert together == alone
    assert all(len(p) < len("\n\n".join(hotpot_documents(s))) for p, s in zip(alone, samples, strict=True))
