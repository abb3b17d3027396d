"""``ScorerBacklog``: how long a new compression would wait for the scorer, so the stage can step aside.

The scorer is one model shared by every request (concurrent compressions take turns pass by
pass), so under load compressions queue behind each other: on this project's 2-core CPU one
HotpotQA-sized prompt (~1,400 tokens) takes about 2-4 s to compress alone, and a burst of
requests waits for all of them (bench/compress_overload.py). Past some wait, compressing costs the caller more time than a
shorter prompt can give back, and the queue only grows while requests keep coming.

The estimate: the tokens of every compression admitted and not yet finished, divided by the
rate the scorer has shown, *tokens finished per second while it was busy*. With several
compressions sharing the scorer, that is the scorer's own speed, not one job's (which would
look slower the more jobs there are). The rate follows recent work: each finished compression
enters it with weight 1 and older ones fade by ``memory`` per compression.

Until one compression has finished there is no rate, and a request that arrives while another
is in flight counts as over any bound: a burst at start-up does not queue on a guess.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["ScorerBacklog"]


class ScorerBacklog:
    """Tokens admitted to the scorer and not finished, and the scorer's measured tokens per second.

    Thread-safe: the stage admits and finishes compressions from worker threads.
    """

    def __init__(self, *, memory: float = 0.8, clock: Callable[[], float] = time.monotonic) -> None:
        self.memory = memory
        self._clock = clock
        self._lock = threading.Lock()
        self._pending_tokens = 0
        self._jobs = 0
        self._marked = clock()
        self._unbooked_busy_s = 0.0  # busy time since the last finish, not yet in the rate
        self._tokens = 0.0  # decayed tokens finished
        self._busy_s = 0.0  # decayed busy seconds they took

    def rate(self) -> float | None:
        """Tokens the scorer finishes per busy second, recently; ``None`` before any finished."""
        with self._lock:
            return self._rate()

    def wait_s(self) -> float | None:
        """Seconds a compression admitted now would wait: 0 when idle, ``None`` when busy and no rate yet."""
        with self._lock:
            return self._wait_s()

    def admit(self, tokens: int, max_wait_s: float | None) -> tuple[bool, float | None]:
        """Admit a compression of ``tokens`` unless its wait would exceed ``max_wait_s`` (``None``: any wait).

        Returns (admitted, the estimated wait). An admitted compression must be ``finish``-ed.
        """
        with self._lock:
            wait = self._wait_s()
            if max_wait_s is not None and (wait is None or wait > max_wait_s):
                return False, wait
            self._mark()
            self._jobs += 1
            self._pending_tokens += tokens
            return True, wait

    def finish(self, tokens: int) -> None:
        """Book a compression admitted with ``tokens`` as done (also when it failed: it used the scorer)."""
        with self._lock:
            self._mark()
            self._jobs -= 1
            self._pending_tokens -= tokens
            self._tokens = self._tokens * self.memory + tokens
            self._busy_s = self._busy_s * self.memory + self._unbooked_busy_s
            self._unbooked_busy_s = 0.0

    def _mark(self) -> None:
        """Count the time since the last mark as busy when a compression was in flight."""
        now = self._clock()
        if self._jobs > 0:
            self._unbooked_busy_s += now - self._marked
        self._marked = now

    def _rate(self) -> float | None:
        return self._tokens / self._busy_s if self._busy_s > 0 and self._tokens > 0 else None

    def _wait_s(self) -> float | None:
        if self._jobs == 0:
            return 0.0
        rate = self._rate()
        return None if rate is None else self._pending_tokens / rate
