"""A fast OpenAI-compatible upstream for measuring the proxy's own cost (``bench/proxy_overhead.py``).

A bare ASGI app (no framework) under uvicorn: ``/v1/models``, and ``/v1/chat/completions`` that
waits ``--prefill-ms``, then streams ``max_tokens`` canned one-token chunks on a fixed schedule,
one every ``--interval-ms`` (pre-encoded, so the upstream spends almost no CPU per chunk), then a
usage chunk and ``[DONE]``. The pacing stands in for a GPU vLLM decoding ~50 tokens/s per stream; with the
upstream's cost held near zero, any difference between "direct" and "through tokenlean" is the
proxy. Run: ``python -m bench.proxy_overhead_upstream --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

MODEL = "fake-model"
_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_JSON = [(b"content-type", b"application/json")]


def _chunk(data: dict[str, Any]) -> bytes:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    return b"data: " + json.dumps({**base, **data}, separators=(",", ":")).encode() + b"\n\n"


_ROLE = _chunk(
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
)
_TOKENS = [
    _chunk({"choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}]})
    for i in range(4096)
]
_STOP = _chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})


class PacedUpstream:
    """The ASGI app; ``prefill`` and ``interval`` are in seconds."""

    def __init__(self, prefill: float, interval: float) -> None:
        self.prefill = prefill
        self.interval = interval

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"].endswith("/models"):
            await _json(send, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        tokens = min(int(request.get("max_tokens") or 32), len(_TOKENS))
        await asyncio.sleep(self.prefill)
        if not request.get("stream"):
            await asyncio.sleep(self.interval * tokens)
            text = "".join(f" tok{i}" for i in range(tokens))
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
            usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
            await _json(
                send,
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 0,
                    "model": MODEL,
                    "choices": [choice],
                    "usage": usage,
                },
            )
            return
        await self._stream(send, tokens)

    async def _stream(self, send: Any, tokens: int) -> None:
        # Tokens leave on a fixed schedule (like a decode loop that does not wait for its
        # readers), not "send, then sleep": otherwise a reader that preempts this process
        # when woken would stretch every gap and slow the direct path more than a relayed one.
        loop = asyncio.get_running_loop()
        start = loop.time()
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _ROLE, "more_body": True})
        for i in range(tokens):
            await send({"type": "http.response.body", "body": _TOKENS[i], "more_body": True})
            await asyncio.sleep(max(0.0, start + (i + 1) * self.interval - loop.time()))
        usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
        tail = _STOP + _chunk({"choices": [], "usage": usage}) + b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _json(send: Any, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _JSON})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def relay(port: int, target: int) -> None:
    """A bare TCP byte relay (no HTTP parsing): the floor any proxy hop costs on this machine."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Serve the paced upstream (or, with ``--relay-to``, a byte relay) on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefill-ms", type=float, default=30.0)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--relay-to", type=int, help="relay TCP to this port instead of serving")
    args = parser.parse_args()
    if args.relay_to:
        try:
            from uvloop import run  # the event loop uvicorn picks for the proxy, where installed
        except ImportError:
            from asyncio import run
        run(relay(args.port, args.relay_to))
        return
    app = PacedUpstream(args.prefill_ms / 1000, args.interval_ms / 1000)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
