"""GPTCache side of ``bench/cache.py``: runs inside .venv-gptcache (``bench/setup_gptcache.sh``).

``python -m bench.gptcache_runner IN.npz IN.json OUT.json WORKDIR`` (from the repository root;
WORKDIR holds GPTCache's SQLite and faiss files, and the caller deletes it afterwards). It never
imports tokenlean. GPTCache gets the *same* MiniLM embeddings as tokenlean (a lookup table from
text to the vector tokenlean computed), its own SQLite + faiss data manager, and its default
similarity evaluation (``SearchDistanceEvaluation``: squared L2 distance mapped to a rank in
[0, 4], compared with ``similarity_threshold`` times the rank range; for unit vectors that is
``cosine >= 2 * threshold - 1``) and its default top-k of 1. The one non-default setting:
``max_size`` is raised above the number of entries so GPTCache's LRU does not evict during the run.

Input: ``vectors`` (n x d float32) in the .npz; in the .json ``texts`` (row i of ``vectors`` is
the embedding of ``texts[i]``), ``pairs`` ([stored, asked]: each pair in a fresh cache, the
issue's protocol), ``stored`` / ``queries`` (lists of [text, id], all in one shared cache),
``thresholds``, and ``probes`` (families of {stored, queries}, plus an optional system prompt pair for the
context probe). Output: for each threshold the answer GPTCache returned for every query (or
null), per-call times, and the same for each probe family.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _cache(folder: Path, table: dict[str, np.ndarray], dimension: int, pre: Any) -> Any:
    from gptcache import Cache, Config
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    folder.mkdir(parents=True, exist_ok=True)
    manager = get_data_manager(
        CacheBase("sqlite", sql_url=f"sqlite:///{folder}/gptcache.db"),
        VectorBase("faiss", dimension=dimension, index_path=str(folder / "faiss.index")),
        max_size=10_000_000,
    )
    cache = Cache()
    cache.init(
        pre_embedding_func=pre,
        embedding_func=lambda text, **_: table[text],
        data_manager=manager,
        similarity_evaluation=SearchDistanceEvaluation(),
        config=Config(similarity_threshold=0.8),
    )
    return cache


def _put(cache: Any, text: str, answer: str, system: str | None) -> None:
    from gptcache.adapter.adapter import adapt

    def handle(*_: Any, **__: Any) -> str:
        return answer

    def update(data: Any, update_cache: Any, *_: Any, **__: Any) -> None:
        update_cache(data)

    adapt(handle, lambda d: d, update, cache_obj=cache, cache_skip=True, **_request(text, system))


def _get(cache: Any, text: str, system: str | None) -> Any:
    from gptcache.adapter.adapter import adapt

    return adapt(
        lambda *_, **__: None, lambda d: d, lambda *_, **__: None, cache_obj=cache, **_request(text, system)
    )


def _request(text: str, system: str | None) -> dict[str, Any]:
    if system is None:
        return {"prompt": text}
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]}


def _sweep(
    cache: Any, queries: list[list[str]], thresholds: list[float], system: str | None
) -> dict[str, Any]:
    answers: dict[str, list[Any]] = {}
    times: list[float] = []
    for threshold in thresholds:
        cache.config.similarity_threshold = threshold
        row = []
        for text, _ in queries:
            started = time.perf_counter()
            row.append(_get(cache, text, system))
            times.append(time.perf_counter() - started)
        answers[repr(threshold)] = row
    return {"answers": answers, "get_ms": sorted(t * 1000 for t in times)}


def _family(
    root: Path,
    name: str,
    family: dict[str, Any],
    table: dict[str, np.ndarray],
    dim: int,
    thresholds: list[float],
) -> dict[str, Any]:
    from gptcache.processor.pre import get_prompt, last_content

    systems = family.get(
        "systems"
    )  # [stored with, queried with]: GPTCache's default keys on the last message
    cache = _cache(root / name, table, dim, last_content if systems else get_prompt)
    started = time.perf_counter()
    for text, answer in family["stored"]:
        _put(cache, text, answer, systems[0] if systems else None)
    put_s = time.perf_counter() - started
    result = _sweep(cache, family["queries"], thresholds, systems[1] if systems else None)
    result["put_s"] = put_s
    return result


def _pairwise(
    root: Path, pairs: list[list[str]], table: dict[str, np.ndarray], dim: int, thresholds: list[float]
) -> dict[str, Any]:
    """The issue's protocol: for each pair a fresh GPTCache holding only the stored text."""
    from gptcache.processor.pre import get_prompt

    answers: dict[str, list[Any]] = {repr(t): [] for t in thresholds}
    for i, (stored, asked) in enumerate(pairs):
        cache = _cache(root / "pairs" / str(i), table, dim, get_prompt)
        _put(cache, stored, "stored", None)
        for threshold in thresholds:
            cache.config.similarity_threshold = threshold
            answers[repr(threshold)].append(_get(cache, asked, None))
        cache.data_manager.close()
    return {"answers": answers}


def main(npz: str, spec: str, out: str, workdir: str) -> None:
    vectors = np.load(npz)["vectors"]
    data = json.loads(Path(spec).read_text())
    table = {text: vectors[i] for i, text in enumerate(data["texts"])}
    import gptcache

    results: dict[str, Any] = {"gptcache_version": gptcache.__version__, "families": {}}
    root = Path(workdir)  # GPTCache flushes its faiss file at exit, so the folder outlives main()
    main_family = {"stored": data["stored"], "queries": data["queries"]}
    results["main"] = _family(root, "main", main_family, table, vectors.shape[1], data["thresholds"])
    for name, family in data["probes"].items():
        results["families"][name] = _family(root, name, family, table, vectors.shape[1], data["thresholds"])
    results["pairwise"] = _pairwise(root, data["pairs"], table, vectors.shape[1], data["thresholds"])
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:5])
