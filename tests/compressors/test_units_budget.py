"""Pure logic of the compressor: word units, protected spans, the budget controller, the fit step."""

from __future__ import annotations

import numpy as np
import pytest

from tokenlean.compressors.budget import fit_selection, plan_budget
from tokenlean.compressors.units import SpanRules, build_piece
from tokenlean.tokens import shared_token_counter

TEXT = (
    "Georg Philipp Telemann was born on 14 March 1681 in Magdeburg. Wilhelm Röntgen found X-rays; "
    "the fee was $6.21 per KEEP THIS PART exactly. University of Paris is old."
)


def _piece(rules: SpanRules):  # type: ignore[no-untyped-def]
    tokenizer = shared_token_counter().tokenizer
    enc = tokenizer(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    return build_piece(TEXT, enc["input_ids"], [tuple(s) for s in enc["offset_mapping"]], rules), enc


def test_units_cover_every_token_and_never_split_a_word() -> None:
    piece, enc = _piece(SpanRules())
    assert sum(u.tokens for u in piece.units) == len(enc["input_ids"])
    texts = [TEXT[u.start : u.end].strip() for u in piece.units]
    assert "Wilhelm Röntgen" in texts  # several tokens, one unit
    assert "Georg Philipp Telemann" in texts and "University of Paris" in texts  # names grouped
    words = set(TEXT.split())
    rng = np.random.default_rng(0)
    for _ in range(20):  # whatever subset is kept, every output word is an input word
        keep = rng.random(len(piece.units)) < 0.4
        assert set(piece.render(keep).split()) <= words


def test_protected_spans_are_units_of_their_own() -> None:
    piece, _ = _piece(SpanRules(protect=("KEEP THIS PART",), protect_numbers=True))
    protected = [TEXT[u.start : u.end].strip() for u in piece.units if u.protected]
    assert "KEEP THIS PART" in protected
    assert any("1681" in p for p in protected) and any("6.21" in p for p in protected)
    keep = np.array([u.protected for u in piece.units])
    assert "KEEP THIS PART" in piece.render(keep)


def test_plan_keeps_best_blocks_first_and_gives_them_gentler_rates() -> None:
    sizes = [100] * 10
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    plan = plan_budget(sizes, order, 200.0, slack=2.0, dynamic=0.3)
    assert plan.kept == (3, 1, 4, 0)  # 2 x budget worth of blocks, in rank order
    rates = [plan.rates[i] for i in plan.kept]
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1]
    assert sum(plan.rates[i] * sizes[i] for i in plan.kept) == pytest.approx(200.0, rel=0.01)


def test_plan_never_drops_a_block_with_protected_tokens() -> None:
    plan = plan_budget([100, 100, 100], [0, 1, 2], 50.0, protected_tokens=[0, 0, 30], slack=1.0, dynamic=0.0)
    assert 2 in plan.kept and plan.rates[2] >= 0.3


def test_fit_selection_trims_lowest_scores_until_the_count_fits() -> None:
    scores = [np.arange(10.0), np.arange(10.0) + 0.5]
    costs = [np.ones(10), np.ones(10)]
    locked = [np.zeros(10, dtype=bool), np.zeros(10, dtype=bool)]
    locked[0][0] = True
    keep = fit_selection(
        [np.ones(10, dtype=bool)] * 2, scores, costs, locked, lambda k: int(sum(m.sum() for m in k)), 8
    )
    assert abs(sum(int(m.sum()) for m in keep) - 8) <= 2
    assert keep[0][0]  # locked stays
    assert keep[1][9] and keep[0][9]  # highest scores stay
