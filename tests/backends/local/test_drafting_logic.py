"""Drafters, verification, the adaptive switch and the vLLM helpers, without a model.

The verification tests use real torch distributions: the speculative sampling rule must give the
target distribution whatever the draft proposes.
"""

from __future__ import annotations

import json

import pytest

from tokenlean.backends.local.drafting.adaptive import AdaptiveSwitch, expected_gain, quality_class
from tokenlean.backends.local.drafting.lookup import NgramIndex, PromptLookupDrafter
from tokenlean.backends.local.drafting.retrieval import (
    DraftDatastore,
    RetrievalDrafter,
    request_hints,
    with_draft_hints,
)
from tokenlean.backends.local.drafting.session import DraftPolicy, DraftSession, parse_draft_mode
from tokenlean.backends.local.drafting.verify import verify_greedy, verify_sampled
from tokenlean.backends.vllm_speculative import (
    SpecDecodeMetrics,
    draft_event,
    main,
    parse_spec_decode_metrics,
    speculative_args,
    speculative_config,
)
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.types import Message, Request


def test_lookup_copies_the_continuation_of_the_latest_longest_match() -> None:
    drafter = PromptLookupDrafter(min_ngram=2, max_ngram=3)
    prompt = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8]
    three, two = (lambda matched: 3), (lambda matched: 2)
    assert drafter.propose([*prompt, 2, 3], three) == ([7, 8, 2], 2)  # (2, 3) last seen before 7 8
    assert drafter.propose([*prompt, 2, 3, 4], two) == ([5, 9], 3)  # the trigram (2, 3, 4) wins over (3, 4)
    assert drafter.propose([*prompt, 2, 3, 4, 42], two) == ([], 0)  # nothing to copy after (4, 42)


def test_lookup_reports_how_far_back_its_match_agrees_and_drafts_what_that_is_worth() -> None:
    passage = [7, 5, 10, 11, 12, 13, 14, 15, 16, 17, 30, 11, 40]
    asked: list[int] = []

    def budget(matched: int) -> int:
        asked.append(matched)
        return 2 if matched < 3 else 5

    # the 4-gram (10, 11, 12, 13) occurs once, and the 2 tokens before it agree too: 6 matched
    long = PromptLookupDrafter().propose([*passage, 99, 7, 5, 10, 11, 12, 13], budget)
    assert long == ([14, 15, 16, 17, 30], 6)
    # only the unigram (11) matches, twice: the later occurrence wins the tie, and 2 tokens are worth it
    assert PromptLookupDrafter().propose([*passage, 77, 11], budget) == ([40, 77], 1)
    assert asked == [6, 1]


def test_ngram_index_never_proposes_the_current_position() -> None:
    index = NgramIndex(2, 2)
    index.extend([5, 6])
    assert index.propose([5, 6], 4) == []  # the only (5, 6) has no successor yet
    index.extend([5, 6])
    assert index.propose([5, 6, 5, 6], 4) == [5, 6]


def test_datastore_is_bounded_and_forgets_the_oldest() -> None:
    store = DraftDatastore(max_tokens=12, min_ngram=2, max_ngram=3)
    store.add([1, 2, 3, 4, 5, 6])
    assert store.propose([9, 1, 2], 2) == [3, 4]
    store.add([7, 8, 9, 10, 11, 12, 13, 14])  # 14 tokens > 12: the first output is dropped
    assert store.propose([9, 1, 2], 2) == [] and len(store) == 8
    assert store.propose([0, 8, 9], 3) == [10, 11, 12]


def test_retrieval_prefers_the_request_hints_to_the_datastore() -> None:
    store = DraftDatastore(min_ngram=2)
    store.add([1, 2, 3, 3, 3])
    drafter = RetrievalDrafter(store, hints=[[1, 2, 8, 8]])
    assert drafter.propose([1, 2], lambda matched: 2) == ([8, 8], 2)
    assert RetrievalDrafter(store).propose([1, 2], lambda matched: 2) == ([3, 3], 2)
    assert not RetrievalDrafter(None).has_text


def test_hints_come_from_the_option_and_from_an_openai_prediction() -> None:
    request = Request(
        messages=(Message("user", "edit this"),),
        extra={"prediction": {"type": "content", "content": "x = 1"}},
    )
    hinted = with_draft_hints(request, ["cached near-miss answer"])
    assert request_hints(hinted) == ["cached near-miss answer", "x = 1"]
    assert request.options == {}  # the original is untouched
    with pytest.raises(BadRequestError) as info:
        request_hints(Request(options={"draft_hints": [1, 2]}))
    assert info.value.param == "tokenlean.draft_hints"


def test_draft_mode_option_is_validated_with_the_param_named() -> None:
    assert parse_draft_mode(None, "auto", has_model=False) == "auto"
    assert parse_draft_mode("lookup", "auto", has_model=False) == "lookup"
    assert parse_draft_mode({"mode": "retrieval"}, "auto", has_model=False) == "retrieval"  # the header shape
    assert parse_draft_mode(False, "auto", has_model=False) == "off"  # YAML's `draft: off`
    for bad, param in (
        ("fast", "tokenlean.draft"),
        (3, "tokenlean.draft"),
        ({"speed": 1}, "tokenlean.draft.speed"),
    ):
        with pytest.raises(BadRequestError) as info:
            parse_draft_mode(bad, "auto", has_model=True)
        assert info.value.param == param
    with pytest.raises(BadRequestError, match="draft model"):
        parse_draft_mode("model", "auto", has_model=False)


def test_verification_costs_follow_the_kernels_unless_the_policy_sets_them() -> None:
    fast, slow = DraftPolicy().resolve(), DraftPolicy().resolve(fast_kernels=False)
    assert (fast.verify_step_cost, fast.verify_cost) == (0.12, 0.05)
    assert (slow.verify_step_cost, slow.verify_cost) == (0.5, 0.07)
    assert DraftPolicy.of({"verify_cost": 0.3}).resolve(fast_kernels=False).verify_cost == 0.3
    # the dearer pass of torch's default matmul makes the same draft worth less
    slow_switch = AdaptiveSwitch(verify_cost=0.07, verify_step_cost=0.5)
    assert slow_switch.gain(2, 4) < AdaptiveSwitch().gain(2, 4)


def test_draft_policy_from_a_spec_mapping_names_unknown_keys() -> None:
    assert DraftPolicy.of({"max_draft": 4}).max_draft == 4 and DraftPolicy.of(None) == DraftPolicy()
    with pytest.raises(ConfigError, match="maxdraft"):
        DraftPolicy.of({"maxdraft": 4})


def test_switch_turns_off_when_drafts_are_rejected_and_drafts_long_when_accepted() -> None:
    bad, good = AdaptiveSwitch(), AdaptiveSwitch()
    for _ in range(12):
        if bad.on:
            bad.record(2, drafted=bad.length(2), accepted=0)
        good.record(2, drafted=good.length(2), accepted=good.length(2))
    assert not bad.on and bad.switched_off and 3 <= bad.steps <= 10 and bad.accepted == 0
    assert good.on and good.length(2) == good.max_draft and good.gain(2, 16) > 5


def test_switch_drafts_by_match_quality() -> None:
    switch = AdaptiveSwitch()
    assert switch.gain(1, 4) < switch.gain(2, 4) < switch.gain(4, 4)  # priors: longer matches land more often
    for _ in range(10):  # this request's unigram matches never land; its long matches always do
        switch.record(1, drafted=switch.length(1) or 1, accepted=0)
        switch.record(4, drafted=8, accepted=8)
    assert switch.on and not switch.switched_off
    assert switch.length(1) == 0 and switch.length(4) == switch.max_draft
    weak = AdaptiveSwitch()
    for _ in range(10):  # failing unigram matches alone do not switch the drafter off (chat copies rarely)
        weak.record(1, drafted=2, accepted=0)
    assert weak.on and weak.length(1) == 0 and weak.length(3) > 0


def test_a_drafter_as_slow_as_the_target_never_starts() -> None:
    assert not AdaptiveSwitch(draft_cost=1.0).on  # no acceptance rate could make it pay
    assert AdaptiveSwitch(draft_cost=0.3).on
    assert expected_gain(1.0, 1.0, 4, 0.0) == 5.0 and expected_gain(0.5, 0.5, 1, 0.0) == 1.5
    assert expected_gain(0.5, 0.5, 2, 0.25, fixed=0.5) == 1.75 / 2.0
    assert [quality_class(m) for m in (0, 1, 2, 3, 5, 6, 40)] == [0, 1, 2, 3, 3, 4, 4]


def test_session_falls_through_to_the_next_drafter_and_reports_counts() -> None:
    store = DraftDatastore(min_ngram=2)
    store.add([1, 2, 3, 4])
    session = DraftSession([PromptLookupDrafter(), RetrievalDrafter(store)], DraftPolicy())
    draft, slot = session.propose([9, 1, 2], limit=5)
    assert (draft, slot) == ([3, 4], 1)  # lookup had nothing, retrieval did
    session.record(slot, 2, 1)
    event = session.event()
    assert event.stage == "draft" and event.data["drafted"] == 2 and event.data["accepted"] == 1
    assert event.data["drafted_retrieval"] == 2 and event.data["drafted_lookup"] == 0


def test_greedy_verification_keeps_the_matching_prefix_then_the_target_token() -> None:
    import torch

    logits = torch.full((4, 10), -5.0)
    for row, token in enumerate([3, 4, 7, 9]):
        logits[row, token] = 5.0
    assert verify_greedy(logits, [3, 4, 5]) == (2, 7)
    assert verify_greedy(logits, [3, 4, 7]) == (3, 9)  # all accepted: the bonus token follows
    assert verify_greedy(logits, [0, 4, 7]) == (0, 3)


@pytest.mark.parametrize("drafted", [0, 2])
def test_speculative_sampling_keeps_the_target_distribution(drafted: int) -> None:
    """The first emitted token is distributed as p whether the draft proposes a likely or an unlikely token."""
    import torch

    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.log(p).repeat(3, 1)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    trials = 20_000
    for _ in range(trials):
        accepted, token = verify_sampled(logits, [drafted, 1], lambda row: torch.softmax(row, -1), generator)
        counts[drafted if accepted else token] += 1
    assert torch.allclose(counts / trials, p, atol=0.015)


def test_vllm_speculative_args_are_the_config_vllm_reads() -> None:
    flag, value = speculative_args("ngram", num_speculative_tokens=5)
    assert flag == "--speculative-config" and " " not in value
    assert json.loads(value) == {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4,
                                 "prompt_lookup_min": 2}  # fmt: skip
    assert speculative_config("draft_model", model="/m")["model"] == "/m"
    for bad in (
        {"method": "magic"},
        {"method": "draft_model"},
        {"prompt_lookup_min": 5},
        {"num_speculative_tokens": 0},
    ):
        with pytest.raises(ConfigError):
            speculative_config(**bad)  # type: ignore[arg-type]
    assert main(["--method", "ngram", "--tokens", "3"]) == 0
    assert main(["--method", "draft_model"]) == 2


def test_vllm_metrics_parser_sums_engines_and_ignores_created_gauges() -> None:
    text = """# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 5.0
vllm:spec_decode_num_drafts_total{engine="1",model_name="m"} 3.0
vllm:spec_decode_num_drafts_created{engine="0",model_name="m"} 1.79e+09
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 32.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 20.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 7.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 6.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 99.0
"""
    metrics = parse_spec_decode_metrics(text)
    assert (metrics.drafts, metrics.draft_tokens, metrics.accepted_tokens) == (8.0, 32.0, 20.0)
    assert metrics.accepted_per_position == (7.0, 6.0) and metrics.acceptance_rate == 0.625
    event = draft_event(SpecDecodeMetrics(2, 8, 4, (2.0,)), metrics)
    assert event.stage == "draft" and event.data == {"drafted": 24, "accepted": 16, "steps": 6}
