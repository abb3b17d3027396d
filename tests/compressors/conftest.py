"""Real data for the compressor tests: HotpotQA distractor samples and the GSM8K CoT prompt."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HOTPOT = DATA / "multidoc_qa" / "hipporag_v1_samples" / "hotpotqa_train.json"
GSM8K_PROMPT = DATA / "gsm8k" / "prompt_hardest.txt"


def hotpot_documents(sample: dict[str, Any]) -> list[str]:
    """The ten paragraphs of a sample as "Title\\ntext" blocks."""
    return [title + "\n" + "".join(sentences) for title, sentences in sample["context"]]


def contains_answer(answer: str, text: str) -> bool:
    """The gold answer as a whole phrase, case-insensitively."""
    return re.search(r"(?<!\w)" + re.escape(answer.lower()) + r"(?!\w)", text.lower()) is not None


def hotpot_eligible() -> list[dict[str, Any]]:
    """Samples whose answer is a span of the context (not yes/no): answer survival is measurable."""
    samples = json.loads(HOTPOT.read_text())
    return [
        s
        for s in samples
        if s["answer"].lower() not in ("yes", "no")
        and contains_answer(s["answer"], "\n\n".join(hotpot_documents(s)))
    ]


def hotpot_test_subset(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A fixed sample for the tests, disjoint from the benchmark's (bench/compression.py, seed 0)."""
    eligible = hotpot_eligible()
    bench_ids = {s["_id"] for s in random.Random(0).sample(eligible, 30)}
    pool = [s for s in eligible if s["_id"] not in bench_ids]
    return random.Random(seed).sample(pool, n)


@pytest.fixture(scope="session")
def hotpot_sample() -> dict[str, Any]:
    """One multi-document question (about 1,000-2,000 tokens of context)."""
    return hotpot_test_subset(1, seed=3)[0]


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():  # type: ignore[no-untyped-def]
    """One intra-op thread while these tests run: on a busy 2-core machine two threads spin-wait
    against the other processes and a forward pass gets several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def compressor():  # type: ignore[no-untyped-def]
    """The default compressor on the embedded SmolLM2, loaded once for the package."""
    from tokenlean.compressors import LinguaCompressor

    compressor = LinguaCompressor()
    compressor.scorer.load()
    return compressor
