"""Fixtures for the demonstration-selection tests: the real MiniLM embedder and real pools."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tokenlean.selectors import DemoPool, Example

_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not _DATA.exists():
    _DATA = Path(os.environ.get("TOKENLEAN_DATA", "../shared/data")).resolve()
SST2_TRAIN = _DATA / "icl_classification" / "sst2" / "stsa.binary.train"

# (pool input, label, paraphrase used as the query); the distractors share topics and words.
PARAPHRASES = [
    ("How do I reset my password?", "account", "I forgot my password, how can I set a new one?"),
    ("What time does the store open on Sundays?", "hours", "On Sundays, when does the shop open its doors?"),
    (
        "Can I return an item without a receipt?",
        "returns",
        "Is it possible to bring something back if I lost the receipt?",
    ),
    ("The movie was a complete waste of time.", "negative", "That film was a total waste of my time."),
    (
        "An absolutely wonderful film with brilliant acting.",
        "positive",
        "A truly wonderful movie, the acting was brilliant.",
    ),
    ("Who wrote the novel Pride and Prejudice?", "person", "Who is the author of Pride and Prejudice?"),
    ("How far is the Moon from the Earth?", "number", "What is the distance between the Earth and the Moon?"),
    (
        "The goalkeeper saved a penalty in the final minute.",
        "sports",
        "In the last minute the keeper stopped a penalty kick.",
    ),
    (
        "Scientists discovered a new species of frog in the rainforest.",
        "science",
        "Researchers found a previously unknown frog species in the jungle.",
    ),
]
DISTRACTORS = [
    ("How do I change my username?", "account"),
    ("What time does the store close on Saturdays?", "hours"),
    ("The movie's soundtrack was released on vinyl.", "music"),
    ("Who directed the film version of Pride and Prejudice?", "person"),
    ("How far is Mars from the Sun?", "number"),
    ("The central bank kept interest rates unchanged.", "business"),
    ("The striker was sent off after a second yellow card.", "sports"),
]


def _example(text: str, label: str) -> Example:
    return Example(text, label, label)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Embed on one thread while these tests run, restoring the setting after each module.

    On a small machine shared with other model processes, two intra-op threads spin-wait on
    each other: one MiniLM query then takes ~900 ms instead of ~20 ms.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 (one per process)."""
    from tokenlean.embeddings import shared_embedder

    return shared_embedder()


@pytest.fixture(scope="session")
def paraphrase_pool(embedder) -> DemoPool:  # type: ignore[no-untyped-def]
    """Sixteen examples: nine with a paraphrase query each, seven same-topic distractors."""
    examples = [_example(text, label) for text, label, _ in PARAPHRASES]
    examples += [_example(text, label) for text, label in DISTRACTORS]
    return DemoPool.build("para", examples, embedder=embedder)


@pytest.fixture(scope="session")
def sst2_pool(embedder) -> DemoPool:  # type: ignore[no-untyped-def]
    """The first 200 SST-2 training sentences (labels negative/positive), exact index."""
    rows = SST2_TRAIN.read_text(encoding="utf-8").splitlines()[:200]
    names = {"0": "negative", "1": "positive"}
    examples = [Example(line[2:], names[line[0]], names[line[0]]) for line in rows]
    return DemoPool.build("sst2", examples, embedder=embedder, index="flat")
