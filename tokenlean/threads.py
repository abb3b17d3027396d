"""How many torch intra-op threads a process that runs the model uses: one, set once for the whole process.

Why: a small model gains nothing from intra-op parallelism, and loses a lot when other work
competes for the cores. Measured on the 2-core dev machine: SmolLM2-135M greedy decode 22.5
tokens/s with 2 threads vs 22.6 with 1 when idle, but 6.0 vs 23.6 at load average ~2.7; one
MiniLM query embedding 703 ms with 2 threads vs 8.7 ms with 1 under the same load; the SoT
router's half pass 245-320 ms with 2 threads vs 87-99 ms with 1 while another process keeps one
core busy, 67-90 vs 87-104 ms idle (bench/small_model_threads.py, 2026-12-07). The cause is
OpenMP workers spinning at the barrier of every small matmul while the other core is taken. A
serving process nearly always has a pass running beside another (the decode thread, vLLM on the
same cores, concurrent requests), so it runs every pass on one thread and gets its parallelism
from running requests side by side.

torch's count **leaks between threads** (torch 2.13, checked in ``tests/test_threads.py``): each
thread has its own, but a thread takes the count that any thread set last when it first runs a
pass, whatever it set for itself before. So it cannot be scoped to one call on the serving path:
an earlier version set one thread around each embedding and restored the old count afterwards,
and a restore to two landing while the embedded backend's decode thread waited for its first
batch could put decoding on two threads (the slow case above; whether it happened in a given
run was not recorded). So the count is set once, before any pass, by what shares the cores: the
embedded backend sets ``decode_threads`` (1 for a small model) for the whole process when it is
built, before any stage loads a model, and nothing on the request path changes it. The compressor's block scoring then runs on one thread too, though on an idle machine
it would gain from more (2.0 s with 2 threads vs 3.8 s with 1; 5.9 s vs 3.8 s with a core busy).
A proxy in front of an upstream keeps torch's default, so that a dedicated many-core proxy host
compresses on all its cores; where it shares cores with the model server (vLLM on the same CPU),
start it with ``OMP_NUM_THREADS=1``.
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
    """Run the block with ``count`` intra-op threads, then restore the old count.

    Process-wide (see the module docstring): only for a caller that runs nothing else meanwhile,
    such as a benchmark timing one pass; never on the serving path.
    """
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
