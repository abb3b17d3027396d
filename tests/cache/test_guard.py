"""The meaning guard: flips are vetoed, paraphrases pass."""

from __future__ import annotations

import pytest

from tokenlean.cache.guard import MeaningGuard

guard = MeaningGuard()


@pytest.mark.parametrize(
    ("query", "candidate", "reason"),
    [
        ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?", "order"),
        ("Is Vietnam better than India?", "Is India a better country than Vietnam?", "order"),
        ("How do I convert USD to EUR?", "How do I convert EUR to USD?", "order"),
        ("How do I get from Paris to London?", "How do I get from London to Paris?", "order"),
        ("Is Python faster than Java?", "Is Python faster than Rust?", "order"),  # another comparand
        ("What do people in Oslo think of Berlin?", "What do people in Berlin think of Oslo?", "order"),
        (
            "What can I import from Peru and sell in Spain?",
            "What can I import from Spain and sell in Peru?",
            "order",
        ),
        ("Are wolves afraid of bears?", "Are bears afraid of wolves?", "order"),  # roles exchanged
        ("Is a cat bigger than a dog?", "Is a cat smaller than a dog?", "direction"),
        ("What is the best laptop for students?", "What is the worst laptop for students?", "direction"),
        ("What is 17 times 23?", "What is 17 times 24?", "numbers"),
        ("Best phone under 300 dollars?", "Best phone under 500 dollars?", "numbers"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
        ("Why can't I sleep at night?", "Why can I sleep at night?", "negation"),
    ],
)
def test_meaning_flips_are_vetoed(query: str, candidate: str, reason: str) -> None:
    verdict = guard.score(query, candidate, similarity=0.99)
    assert verdict.reason == reason and verdict.vetoed and verdict.score == pytest.approx(0.99 - 1.0)


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("Is a cat bigger than a dog?", "Are cats larger than dogs?"),
        ("What is two plus two?", "What is 2 plus 2?"),
        ("Which is better, iPhone or Android?", "Which is better, Android or iPhone?"),  # symmetric: allowed
        (
            "What is the difference between a lake and a pond?",
            "What is the difference between a pond and a lake?",
        ),
        (
            "How can an allergy to pollen be treated?",
            "How do you treat pollen allergy?",
        ),  # reworded, not swapped
        ("What are some good tips for self study?", "What are the smart tips for self-studying?"),
        ("Price of 1,000 shares?", "Price of 1000 shares?"),
    ],
)
def test_paraphrases_are_not_vetoed(query: str, candidate: str) -> None:
    assert guard.veto(query, candidate) is None


def test_novelty_lowers_the_score_per_differing_content_word() -> None:
    same = guard.score("How do I learn Python?", "How do I learn Python quickly?", 0.95)
    more = guard.score(
        "How do I learn Python?", "How do I learn Python for data science and machine learning jobs?", 0.95
    )
    assert same.score == pytest.approx(0.95 - 0.1)
    assert more.score < same.score and more.reason == "novelty" and not more.vetoed


def test_checks_can_be_switched_off() -> None:
    lax = MeaningGuard(numbers=False, negation=False, order=False, direction=False, novelty_penalty=0.0)
    assert lax.score("Is a cat bigger than a dog?", "Is a dog smaller than a cat?", 0.9).score == 0.9
