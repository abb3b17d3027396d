"""Latency figures of ``bench/cache.py``: lookup at 10k/100k entries, the longest stall while the
index grows, the IVF search's recall and time by ``nprobe``, MiniLM per question, and miss vs hit end to end through the in-process proxy with the
embedded model."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np

from bench.common import median, percentile


async def lookup_latency(
    table: dict[str, np.ndarray], queries: list[str], sizes: tuple[int, ...]
) -> dict[str, Any]:
    """Time ``ResponseCache.lookup`` (keys, exact miss, index search, guard, fetch) at each size.

    The entries are real questions (the table's texts, a letters-only suffix once they run out)
    with their vectors plus noise (a vector of norm 0.5, then renormalised), all in one context:
    the worst case, one shard holding everything. The head scores every candidate over the cosine
    floor, so real texts keep its lexical features at their real cost. The embedding of the asked
    text is served from the table here; MiniLM's own time per question is measured apart.
    """
    from bench.cache import TableEmbedder, keys_for
    from tokenlean.cache.semantic import ResponseCache
    from tokenlean.cache.stores.memory import MemoryStore

    asked = set(queries)
    texts = [t for t in table if t not in asked]  # never the asked text itself: that is an exact hit
    real = np.vstack([table[t] for t in texts])
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for size in sizes:
        noise = rng.standard_normal((size, real.shape[1])).astype(np.float32)
        rows = np.arange(size) % len(real)
        filler = real[rows] + 0.5 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        filler /= np.linalg.norm(filler, axis=1, keepdims=True)
        cache = ResponseCache(
            MemoryStore(max_entries=10 * size, max_bytes=2**40), embedder=TableEmbedder(table)
        )
        started = time.perf_counter()
        longest_put = 0.0
        for i, vector in enumerate(filler):
            text = texts[rows[i]] + ("" if i < len(texts) else " " + _letters(i // len(texts)))
            put_started = time.perf_counter()
            await cache.put(keys_for(text), "answer", ttl=None, vector=vector)
            longest_put = max(longest_put, time.perf_counter() - put_started)
        build_s = time.perf_counter() - started
        await cache.lookup(keys_for(queries[0]))  # first sync after the build
        cache.settle()  # time the index the last retrain built
        times = []
        for text in queries:
            started = time.perf_counter()
            await cache.lookup(keys_for(text))
            times.append((time.perf_counter() - started) * 1000)
        out[str(size)] = {
            "p50_ms": median(times),
            "p99_ms": percentile(times, 99),
            "build_s": build_s,
            "longest_put_ms": longest_put * 1000,
        }
        await cache.aclose()
    return out


class _InPlace(Executor):
    """Runs each task at once in the caller's thread: the index's retrain as it was before it moved
    to a worker thread (2026-12-08), for the side-by-side figure of ``growth_stall``."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))  # an error reaches the caller, as it did in place
        return future


def growth_stall(size: int, dimension: int = 384) -> dict[str, Any]:
    """The longest single ``add`` while one shard grows to ``size`` vectors, retraining in place vs
    in the worker thread: the stall every request in flight on the proxy's event loop would see.

    Random unit vectors: k-means' cost depends on their number and dimension, not their meaning.
    """
    from tokenlean.cache.index import ScopedIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out: dict[str, Any] = {"size": size}
    for name, executor in (("in_place", _InPlace()), ("worker_thread", None)):
        index = ScopedIndex(dimension, executor=executor)
        adds = []
        started = time.perf_counter()
        for i, vector in enumerate(vectors):
            add_started = time.perf_counter()
            index.add(f"k{i}", "c", vector)
            adds.append((time.perf_counter() - add_started) * 1000)
        out[name] = {
            "longest_add_ms": max(adds),
            "adds_over_100ms": sum(ms > 100 for ms in adds),
            "fill_s": time.perf_counter() - started,
        }
        index.settle()
        index.close()
    return out


def index_recall(
    table: dict[str, np.ndarray], duplicates: list[tuple[str, str]], size: int, probes: tuple[int, ...]
) -> dict[str, Any]:
    """For each ``nprobe``: how often the IVF search finds a duplicate's stored partner among the
    ``top_k`` (4) that exact search finds there, and the search's time; what ``nprobe`` trades.

    One side of every duplicate pair whose cosine is at least 0.8 (pairs that can hit) is stored
    among ``size`` entries, the rest filler as in ``lookup_latency`` (the table's questions plus
    noise); the other side is the query. Misses of a search are misses of the cache, never wrong hits.
    """
    import faiss

    from tokenlean.cache.index import ScopedIndex

    stored = np.vstack([table[a] for a, _ in duplicates])
    asked = np.vstack([table[b] for _, b in duplicates])
    close = np.einsum("ij,ij->i", stored, asked) >= 0.8
    stored, asked = stored[close], asked[close]
    rng = np.random.default_rng(1)
    real = np.vstack(list(table.values()))
    noise = rng.standard_normal((size - len(stored), real.shape[1])).astype(np.float32)
    filler = real[rng.integers(0, len(real), len(noise))] + 0.5 * noise / np.linalg.norm(
        noise, axis=1, keepdims=True
    )
    data = np.vstack([stored, filler / np.linalg.norm(filler, axis=1, keepdims=True)]).astype(np.float32)
    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(data)
    _, nearest = exact.search(asked, 4)
    findable = np.array([i in row for i, row in enumerate(nearest)])
    out: dict[str, Any] = {"pairs": len(stored), "size": size, "exact_finds": float(findable.mean())}
    for nprobe in probes:
        index = ScopedIndex(data.shape[1], nprobe=nprobe)
        index.add_many([(str(i), "c", vector, "") for i, vector in enumerate(data)])
        index.settle()
        found, times = [], []
        for i, vector in enumerate(asked):
            started = time.perf_counter()
            keys = [key for key, _, _ in index.search("c", vector, 4)]
            times.append((time.perf_counter() - started) * 1000)
            found.append(str(i) in keys)
        index.close()
        out[str(nprobe)] = {
            "found_where_exact_finds": float(np.array(found)[findable].mean()),
            "search_p50_ms": median(times),
        }
    return out


def _letters(n: int) -> str:
    """``n`` spelt in letters (a suffix that adds no number for the guard to veto on)."""
    out = ""
    while True:
        n, r = divmod(n, 26)
        out += chr(97 + r)
        if n == 0:
            return "x" + out


def embed_latency(texts: list[str]) -> dict[str, Any]:
    """MiniLM's time to embed one question, which a semantic lookup adds to the index lookup.

    Measured with torch's default intra-op threads and with one: on a busy machine the default
    OpenMP threads spin against other processes and a one-sentence embedding slows down badly.
    Each setting embeds its own half of ``texts``: the embedder keeps recent vectors, so a text
    embedded twice would time a lookup in that memo, not MiniLM.
    """
    import torch

    from tokenlean.embeddings import shared_embedder

    embedder = shared_embedder()
    embedder.embed(["A warm-up sentence nobody asks."])
    default_threads = torch.get_num_threads()
    out: dict[str, Any] = {}
    for threads, part in ((default_threads, texts[0::2]), (1, texts[1::2])):
        torch.set_num_threads(threads)
        times = []
        for text in part:
            started = time.perf_counter()
            embedder.embed([text])
            times.append((time.perf_counter() - started) * 1000)
        out[f"{threads}_threads"] = {"p50_ms": median(times), "p99_ms": percentile(times, 99)}
    torch.set_num_threads(default_threads)
    return out | out[f"{default_threads}_threads"]


QUESTIONS = [  # rewordings the duplicate head accepts at the default threshold (semantic hits)
    ("How do I learn Python?", "How can I learn Python?"),
    ("How do I bake bread at home?", "How can I bake bread at home?"),
    ("How can I improve my English speaking skills?", "How do I improve my English speaking skills?"),
]


async def proxy_latency() -> dict[str, Any]:
    """Miss vs exact hit vs semantic hit, end to end through the in-process proxy (official client)."""
    import httpx
    import openai

    from tokenlean.backends.local import LocalBackend
    from tokenlean.cache import CacheStage
    from tokenlean.middleware import Pipeline
    from tokenlean.proxy.app import create_app

    backend = LocalBackend()
    model = backend.models()[0]
    app = create_app(Pipeline(backend, [CacheStage()]))
    times: dict[str, list[float]] = {"miss": [], "exact hit": [], "semantic hit": []}
    actions: list[str] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy", timeout=600
    ) as http:
        client = openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http)

        async def ask(text: str) -> tuple[float, str]:
            started = time.perf_counter()
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": text}], max_tokens=32, temperature=0
            )
            return (time.perf_counter() - started) * 1000, raw.headers.get("x-tokenlean-cache", "")

        await ask("Say hello.")  # warm-up: first model call and first embedding
        for question, paraphrase in QUESTIONS:
            for kind, text in (("miss", question), ("exact hit", question), ("semantic hit", paraphrase)):
                ms, action = await ask(text)
                times[kind].append(ms)
                actions.append(f"{kind}:{action}")
    await backend.aclose()
    out: dict[str, Any] = {k: {"p50_ms": median(v), "all_ms": v} for k, v in times.items()}
    out["actions"] = actions
    out["miss_over_hit"] = out["miss"]["p50_ms"] / out["exact hit"]["p50_ms"]
    return out
