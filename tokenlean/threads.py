"""How many torch intra-op threads the small models here should use, and a scoped way to set it.

Why this module exists: a small model gains nothing from intra-op parallelism, and loses a lot
when other processes compete for the cores. Measured on the 2-core dev machine: SmolLM2-135M
greedy decode 22.5 tokens/s with 2 threads vs 22.6 with 1 when idle, but 6.0 vs 23.6 at load
average ~2.7; one MiniLM query embedding 703 ms with 2 threads vs 8.7 ms with 1 under the same
load. The cause is OpenMP workers spinning at the barrier of every tiny matmul while the other
core is taken. ``torch.set_num_threads`` acts on the calling thread's OpenMP pool, so setting it
on the decode thread (or around one embedding call) leaves the rest of the process alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SMALL_MODEL_PARAMETERS", "decode_threads", "torch_threads"]

SMALL_MODEL_PARAMETERS = 1_000_000_000
"""Below this many parameters one thread decodes as fast as several, and much faster under load."""


def decode_threads(model: Any) -> int:
    """1 for a small model; torch's default (one per core) for a large one."""
    import torch

    parameters = sum(p.numel() for p in model.parameters())
    return 1 if parameters < SMALL_MODEL_PARAMETERS else torch.get_num_threads()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads on this thread, then restore the old count."""
    import torch

    previous = torch.get_num_threads()
    if previous == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
