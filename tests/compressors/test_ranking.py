"""Block ranking for question-aware compression: BM25, the LM fusion and heading bridging."""

from __future__ import annotations

import pytest

from tokenlean.compressors.ranking import rank_blocks

BLOCKS = [
    "Mount Everest\nEverest is the highest mountain above sea level.",
    "Bananas\nA banana is an elongated, edible fruit.",
    "Eiffel Tower\nThe Eiffel Tower is a wrought-iron tower in Paris, finished in 1889.",
    "Paris\nParis is the capital of France and its largest city.",
]


def test_bm25_ranking_needs_no_lm_and_bridges_to_a_block_the_question_never_names() -> None:
    question = "Which country holds the Eiffel Tower?"
    # BM25 alone finds the tower's block and nothing else (no other block shares a word)
    assert rank_blocks(question, BLOCKS, None, method="bm25", bridge=0.0) == [2, 0, 1, 3]
    # "Paris" is named in the best block, not in the question: the bridge lifts its block to the top two
    assert rank_blocks(question, BLOCKS, None, method="bm25")[:2] == [3, 2]


def test_lm_rankings_refuse_to_run_without_the_lm_scores() -> None:
    with pytest.raises(ValueError, match="lm\\+bm25"):
        rank_blocks("Where is Paris?", BLOCKS, None, method="lm+bm25")
    assert rank_blocks("Where is Paris?", BLOCKS, [-5.0, -6.0, -2.0, -1.0], method="lm") == [3, 2, 0, 1]
