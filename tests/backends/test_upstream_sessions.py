"""The upstream HTTP sessions: one per event loop, closed on their own loop, never leaked."""

from __future__ import annotations

import asyncio
import gc

import aiohttp

from tokenlean.backends.upstream_http import UpstreamSessions
from tokenlean.middleware.sync import run_sync

URL = "http://127.0.0.1:9/v1/"  # sessions connect lazily: nothing listens here, nothing is sent


def _sessions() -> UpstreamSessions:
    return UpstreamSessions(aiohttp.ClientTimeout(total=5), {}, max_connections=4)


async def _session_of(sessions: UpstreamSessions) -> aiohttp.ClientSession:
    return sessions.session(URL)


async def _turns(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_one_session_per_loop_and_aclose_closes_each_on_its_own_loop() -> None:
    sessions = _sessions()
    here = sessions.session(URL)
    assert sessions.session(URL) is here  # reused on the same loop
    bridged = run_sync(_session_of(sessions))  # the sync bridge's loop, another thread
    assert bridged is not here
    assert not here.closed and not bridged.closed  # using one loop's session leaves the other's alone
    await sessions.aclose()
    run_sync(_turns())  # the bridge loop runs the close it was handed
    assert here.closed and bridged.closed


async def test_a_dropped_owner_closes_its_sessions() -> None:
    sessions = _sessions()
    session = sessions.session(URL)
    del sessions
    gc.collect()
    await _turns()
    assert session.closed


async def test_a_closed_session_is_replaced() -> None:
    sessions = _sessions()
    first = sessions.session(URL)
    await first.close()
    second = sessions.session(URL)
    assert second is not first and not second.closed
    await sessions.aclose()
    assert second.closed
