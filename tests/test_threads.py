"""torch's intra-op thread count is set once per process, because a count set on one thread leaks to others."""

from __future__ import annotations

import threading

import pytest

from tokenlean.threads import torch_threads

torch = pytest.importorskip("torch")


def test_a_thread_takes_the_count_another_thread_set_last_at_its_first_use() -> None:
    """Why the count cannot be scoped per call on the serving path (tokenlean.threads): the
    decode thread sets 1 when it starts, but another thread's later setting wins at its first pass."""
    seen: list[int] = []
    decode_started, other_set = threading.Event(), threading.Event()

    def decode_thread() -> None:
        torch.set_num_threads(1)
        decode_started.set()
        other_set.wait()
        seen.append(torch.get_num_threads())

    def other_thread() -> None:
        decode_started.wait()
        torch.set_num_threads(2)
        other_set.set()

    mine = torch.get_num_threads()
    try:
        threads = [threading.Thread(target=decode_thread), threading.Thread(target=other_thread)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        torch.set_num_threads(mine)  # the count later threads start from
    assert seen == [2]


def test_torch_threads_restores_the_count_when_the_block_raises() -> None:
    with torch_threads(2):
        with pytest.raises(RuntimeError), torch_threads(1):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
