"""Request-sized passes of the small models run on one torch thread; bulk passes keep the default."""

from __future__ import annotations

import pytest

from tokenlean.threads import SMALL_BATCH, batch_threads, torch_threads

torch = pytest.importorskip("torch")


def test_a_request_sized_batch_runs_on_one_thread_and_the_count_comes_back() -> None:
    with torch_threads(2):
        with batch_threads(1):
            assert torch.get_num_threads() == 1
        with batch_threads(SMALL_BATCH):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2


def test_a_bulk_batch_keeps_the_callers_thread_count() -> None:
    with torch_threads(2), batch_threads(SMALL_BATCH + 1):
        assert torch.get_num_threads() == 2


def test_the_count_comes_back_when_the_block_raises() -> None:
    with torch_threads(2):
        with pytest.raises(RuntimeError), batch_threads(1):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
