"""Skeleton parsing on messy model output (several cases are SmolLM2-135M's own, verbatim)."""

from __future__ import annotations

import pytest

from tokenlean.reasoning.sot import clean_expansion, parse_skeleton
from tokenlean.reasoning.sot.parse import clean_lead, drop_restated_opening, trim_to_sentence

CASES = [
    # SmolLM2: a clean list followed by a stray remark
    (
        (
            "1. Prioritize tasks effectively\n2. Set realistic goals and deadlines\n3. Delegate tasks when possible\n\n"
            "The answer to this question is:"
        ),
        ("Prioritize tasks effectively", "Set realistic goals and deadlines", "Delegate tasks when possible"),
    ),
    # SmolLM2: every point on one line, each a sentence after a title, cut off by max_tokens
    (
        (
            "1. Syntax: Python has a more verbose syntax compared to JavaScript. 2. Data Types: Python has more data "
            "types than JavaScript. 3. Operators: Python has more operators than JavaScript. 4. Memory"
        ),
        ("Syntax", "Data Types", "Operators", "Memory"),
    ),
    # SmolLM2: an echoed example list after the real one (numbering restarts)
    (
        (
            "1. Track your spending\n2. Set a budget\n3. Cook at home\n\nQuestion: What are the benefits?\nOutline:\n"
            "1. Improved mental"
        ),
        ("Track your spending", "Set a budget", "Cook at home"),
    ),
    # preamble, Markdown bullets with bold, nested sub-bullets, a title with an explanation
    (
        (
            "Sure! Here is the outline:\n\n- **Exercise** regularly\n- Eat well\n  - fruit\n  - vegetables\n"
            "- Sleep: 8 hours a night"
        ),
        ("Exercise regularly", "Eat well", "Sleep"),
    ),
    (
        "### 1. Start early\n### 2. Take breaks\n### 3) Ask for help",
        ("Start early", "Take breaks", "Ask for help"),
    ),
    ("Point 1: speed\nPoint 2: cost\nStep 3 - safety", ("speed", "cost", "safety")),
    ("(1) alpha (2) beta (3) gamma", ("alpha", "beta", "gamma")),
    ("1) A\n   a. detail\n2) B\n3) C", ("A", "B", "C")),
    ("• one thing\n• another thing\n• one thing", ("one thing", "another thing")),
    ("1. Work hard\n2. Work\n3. Rest\n", ("Work hard", "Rest")),  # a point that repeats the start of another
]


@pytest.mark.parametrize(("text", "points"), CASES)
def test_messy_skeletons_parse(text: str, points: tuple[str, ...]) -> None:
    assert parse_skeleton(text) == points


@pytest.mark.parametrize(
    "text",
    [
        "The answer is 42.",
        "1. Only one point",
        "",
        "Python is a language.\nJavaScript is another one.",
        "Let me think. We need 2. But 3 is also possible.",
    ],
)
def test_what_is_not_a_list_does_not_parse(text: str) -> None:
    assert parse_skeleton(text) is None


def test_repeating_the_question_is_not_a_skeleton() -> None:
    # SmolLM2 on a counterfactual: the question three times, the last cut off
    text = (
        "1. The Internet had been invented during the Renaissance period.\n"
        "2. The Internet had been invented during the Renaissance period.\n"
        "3. The Internet had been invented during the"
    )
    question = "What if the Internet had been invented during the Renaissance period?"
    assert parse_skeleton(text, truncated=True, question=question) is None


def test_a_truncated_last_point_is_dropped_and_max_points_caps() -> None:
    assert parse_skeleton("1. Syntax\n2. Data types\n3. Spe", truncated=True) == ("Syntax", "Data types")
    assert parse_skeleton("1. Syntax\n2. Data types\n3. Speed\n", truncated=True) == (
        "Syntax",
        "Data types",
        "Speed",
    )
    assert parse_skeleton("\n".join(f"{i}. point {i}" for i in range(1, 10)), max_points=4) == (
        "point 1",
        "point 2",
        "point 3",
        "point 4",
    )
    assert parse_skeleton("1. a\n2. b", min_points=3) is None


def test_long_points_are_cut_to_a_short_title() -> None:
    [first, second] = (
        parse_skeleton(
            "1. Regular exercise improves your cardiovascular health, mood and sleep quality over many years of life\n"
            "2. Diet"
        )
        or ()
    )
    assert first == "Regular exercise improves your cardiovascular health" and second == "Diet"


def test_clean_expansion_drops_restated_titles_and_other_points() -> None:
    others = ["Prioritize tasks", "Delegate tasks when possible"]
    text = "2. **Set realistic goals**: make goals you can reach.\n3. Delegate tasks when possible\nmore"
    assert clean_expansion(text, "Set realistic goals", others) == "make goals you can reach."
    own_list = "There are three ways:\n1. write it down\n2. review weekly"
    assert clean_expansion(own_list, "Plan", others) == own_list
    assert clean_expansion("Settle in first.", "Set", others) == "Settle in first."  # a word, not the title
    # SmolLM2 began a point with its title as the subject: stripping it would leave "is the most ..."
    sentence = "Encourage open communication is the most effective strategy."
    assert clean_expansion(sentence, "Encourage open communication", others) == sentence


def test_a_point_cut_by_its_budget_ends_at_its_last_full_sentence() -> None:
    assert trim_to_sentence("Start early. Then take breaks and") == "Start early."
    assert trim_to_sentence("Use e.g. a list and") == "Use e.g. a list and"  # no sentence ended
    assert trim_to_sentence('He said "go." Then') == 'He said "go."'


def test_an_opening_that_restates_the_question_is_dropped() -> None:
    question = "How can I improve my time management skills?"
    # SmolLM2's habit, once per point
    assert (
        drop_restated_opening("To improve your time management skills, set goals.", question) == "Set goals."
    )
    assert (
        drop_restated_opening("By using a calendar, you plan ahead.", question)
        == "By using a calendar, you plan ahead."
    )
    assert drop_restated_opening("Time management matters", question) == "Time management matters"


@pytest.mark.parametrize(
    ("raw", "truncated", "lead"),
    [
        ("Saving money takes a few habits.\n1. Cook at home", False, "Saving money takes a few habits."),
        ('**"Stress can be tamed with habits."**', False, "Stress can be tamed with habits."),
        (
            "In the future, AI could change how care is delivered, with chatbots helping",
            True,
            "In the future, AI could change how care is delivered.",
        ),
        ("Trains shaped cities. They also changed how people", True, ""),  # three words left
        (
            "Trains shaped modern cities a lot. They also changed how people",
            True,
            "Trains shaped modern cities a lot.",
        ),
        ("1. Plan the week\n2. Set priorities", False, ""),
        ("- a bullet is no opening line", False, ""),
        ("Hello there.", False, ""),
        ("A run-on opening without any clause break at all", True, ""),
    ],
)
def test_an_opening_line_is_one_whole_sentence_or_nothing(raw: str, truncated: bool, lead: str) -> None:
    assert clean_lead(raw, truncated=truncated) == lead
