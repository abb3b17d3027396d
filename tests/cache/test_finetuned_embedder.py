"""The fine-tuned cache embedder's loader (bench/cache_embedder.py) and ranking loss
(bench/cache_finetune.py), on the real installed MiniLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _save_top(embedder: Any, path: Path, scale: float = 1.0) -> None:
    """MiniLM's own top two layers as float16 (optionally with their output weights scaled)."""
    bert = embedder._model[0].auto_model
    arrays = {}
    for offset, layer in enumerate(bert.encoder.layer[4:]):
        for name, value in layer.state_dict().items():
            array = value.numpy().astype(np.float32)
            if name == "output.dense.weight":
                array = array * scale
            arrays[f"{offset}.{name}"] = array.astype(np.float16)
    np.savez(path, top=np.array(2), **arrays)


def test_stock_top_layers_reproduce_minilm(embedder: Any, tmp_path: Path) -> None:
    from bench.cache_embedder import CacheEmbedder

    _save_top(embedder, tmp_path / "stock.npz")
    cache = CacheEmbedder(tmp_path / "stock.npz", base=embedder)
    texts = ["How do I lose weight fast?", "What is the capital of France?", "ok"]
    ours, stock = cache.embed(texts), embedder.embed(texts)
    assert ours.shape == (3, embedder.dimension)
    assert np.all(np.einsum("ij,ij->i", ours, stock) > 0.999)  # float16 weights, same model


def test_other_weights_give_other_vectors_and_name(embedder: Any, tmp_path: Path) -> None:
    from bench.cache_embedder import CacheEmbedder

    _save_top(embedder, tmp_path / "stock.npz")
    _save_top(embedder, tmp_path / "changed.npz", scale=0.5)
    stock = CacheEmbedder(tmp_path / "stock.npz", base=embedder)
    changed = CacheEmbedder(tmp_path / "changed.npz", base=embedder)
    assert stock.name != changed.name
    text = ["How do I learn Python quickly?"]
    assert float(stock.embed(text)[0] @ changed.embed(text)[0]) < 0.9999


def test_cosent_is_small_only_when_duplicates_rank_above_near_misses() -> None:
    import torch

    from bench.cache_finetune import cosent

    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    right = cosent(torch.tensor([0.9, 0.3, 0.8, 0.2]), labels)
    wrong = cosent(torch.tensor([0.3, 0.9, 0.2, 0.8]), labels)
    assert float(right) < 0.01 < float(wrong)
