"""How many torch intra-op threads the small models here should use, and a scoped way to set it.

Why this module exists: a small model gains nothing from intra-op parallelism, and loses a lot
when other processes compete for the cores. Measured on the 2-core dev machine: SmolLM2-135M
greedy decode 22.5 tokens/s with 2 threads vs 22.6 with 1 when idle, but 6.0 vs 23.6 at load
average ~2.7; one MiniLM query embedding 703 ms with 2 threads vs 8.7 ms with 1 under the same
load. The cause is OpenMP workers spinning at the barrier of every tiny matmul while the other
core is taken. ``torch.set_num_threads`` acts on the calling thread's OpenMP pool, so setting it
on the decode thread (or around one embedding call) leaves the rest of the process alone.

The SoT router's half pass behaves the same way (bench/small_model_threads.py, 2026-12-07, three
runs: p50 245-320 ms with 2 threads vs 87-99 ms with 1 while another process keeps one core
busy; 67-90 vs 87-104 ms idle), so a request's pass runs on one thread too. The compressor's
block scoring is a large batched pass where the trade is even (last run: 2.0 s with 2 threads vs
3.8 s with 1 idle, 5.9 s vs 3.8 s with a core busy), so it keeps torch's default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

__all__ = ["SMALL_BATCH", "SMALL_MODEL_PARAMETERS", "batch_threads", "decode_threads", "torch_threads"]

SMALL_MODEL_PARAMETERS = 1_000_000_000
"""Below this many parameters one thread decodes as fast as several, and much faster under load."""
SMALL_BATCH = 32
"""Up to this many texts (a query, a request's turns) are encoded on one thread."""


def decode_threads(model: Any) -> int:
    """1 for a small model; torch's default (one per core) for a large one."""
    import torch

    parameters = sum(p.numel() for p in model.parameters())
    return 1 if parameters < SMALL_MODEL_PARAMETERS else torch.get_num_threads()


def batch_threads(size: int) -> AbstractContextManager[None]:
    """One thread for a request-sized batch (``size <= SMALL_BATCH``); torch's default for bulk
    encoding (training, benchmarks), which has the cores to itself and gains from them."""
    return torch_threads(1) if size <= SMALL_BATCH else nullcontext()


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
