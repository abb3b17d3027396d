"""The scorer's two access patterns agree with a plain forward pass (float32, real SmolLM2)."""

from __future__ import annotations

import numpy as np
import pytest

from tokenlean.compressors.scorer import CausalLMScorer

pytestmark = pytest.mark.slow
A = "Marie Curie was a physicist and chemist. She discovered polonium and radium in Paris."
B = " Albert Einstein was born in Ulm in 1879 and later moved to Switzerland."


@pytest.fixture(scope="module")
def scorer() -> CausalLMScorer:
    scorer = CausalLMScorer(dtype="float32")
    scorer.load()
    return scorer


def test_stream_batch_and_full_pass_agree(scorer: CausalLMScorer) -> None:
    a, b = scorer.encode(A)[0], scorer.encode(B)[0]
    full = scorer.score_blocks([a + b])[0].surprisal
    padded = scorer.score_blocks([a, b[:3], a + b])  # padding and length sorting must not change scores
    stream = scorer.stream()
    streamed = np.concatenate([stream.score(a), stream.score(b)])
    assert np.allclose(streamed, full, atol=1e-3)
    assert np.allclose(padded[2].surprisal, full, atol=1e-3) and np.allclose(
        padded[0].surprisal, full[: len(a)], atol=1e-3
    )


def test_question_likelihood_prefers_the_document_that_answers(scorer: CausalLMScorer) -> None:
    question = scorer.encode("\n\nWhere was Albert Einstein born?")[0]
    scores = scorer.score_blocks([scorer.encode(A)[0], scorer.encode(B.strip())[0]], question)
    assert scores[1].suffix_logprob > scores[0].suffix_logprob


def test_pruned_stream_conditions_on_the_kept_tokens(scorer: CausalLMScorer) -> None:
    a, b = scorer.encode(A)[0], scorer.encode(B)[0]
    keep = np.ones(len(a), dtype=bool)
    keep[4:12] = False
    kept = [t for t, k in zip(a, keep, strict=True) if k]
    exact = scorer.score_blocks([kept + b])[0].surprisal[-len(b) :]
    reencoded = scorer.stream()
    reencoded.score(a)
    reencoded.keep(keep, reencode=True)
    assert np.allclose(reencoded.score(b), exact, atol=1e-3)  # exactly the compressed text
    pruned = scorer.stream()
    pruned.score(a)
    pruned.keep(keep)
    unpruned = scorer.stream()
    unpruned.score(a)
    scores, baseline = pruned.score(b), unpruned.score(b)
    assert not np.allclose(scores, baseline, atol=1e-2)  # dropped tokens are no longer attended
    assert np.corrcoef(scores, exact)[0, 1] > 0.8  # and it approximates the exact compressed prefix
