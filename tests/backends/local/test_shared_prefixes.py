"""Which requests starting together share a prefix worth running once (pure logic)."""

from __future__ import annotations

from tokenlean.backends.local.batch_prefill import shared_prefixes

FEW_SHOT = list(range(100, 160))  # a 60-token block both requests send
SYSTEM = list(range(100, 120))  # its first 20 tokens: the system prompt alone


def test_prompts_sharing_a_block_form_one_group_up_to_where_they_differ() -> None:
    prompts = [FEW_SHOT + [1, 2, 3], [7, 8, 9] * 10, FEW_SHOT + [1, 2, 4, 5]]
    assert shared_prefixes(prompts, 16) == [([0, 2], 62)]


def test_a_prompt_sharing_only_the_system_prompt_does_not_shrink_the_group() -> None:
    prompts = [FEW_SHOT + [1], FEW_SHOT + [2], SYSTEM + [3, 4]]
    assert shared_prefixes(prompts, 16) == [([0, 1], 60)]


def test_three_prompts_sharing_only_a_system_prompt_still_share_it() -> None:
    prompts = [SYSTEM + [1, 1], SYSTEM + [2, 2], SYSTEM + [3, 3]]
    assert shared_prefixes(prompts, 16) == [([0, 1, 2], 20)]


def test_identical_prompts_leave_their_last_token_to_run() -> None:
    assert shared_prefixes([FEW_SHOT, FEW_SHOT], 16) == [([0, 1], 59)]


def test_short_or_unrelated_prompts_form_no_group() -> None:
    assert shared_prefixes([[1, 2, 3, 4], [1, 2, 3, 5]], 16) == []
    assert shared_prefixes([FEW_SHOT, [9] * 70], 16) == []
    assert shared_prefixes([FEW_SHOT], 16) == []
