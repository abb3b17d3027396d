"""Train the cache's duplicate head (tokenlean/cache/head.py) on the fit split of labelled QQP.

    python -m bench.cache_head --fit-pairs 24000   # what the shipped head used (all of val)

Fit split (plus MRPC's train split, so that long news sentences are not out of domain; MRPC's
test split stays a test): train. Validation split: choose the number of epochs (the one with the most duplicates
hit at <= 1% false hits) and, in bench/cache.py, the default threshold. Test split: never read
here. Inputs are MiniLM vectors from ``bench.cache.embed_all`` (cached on disk) and the head's
own features (idf over all fit texts); the model is a perceptron with one hidden layer of 128 ReLU
units over 789 inputs (21 lexical, 768 from the vectors), trained with AdamW and binary cross
entropy (torch, CPU, a minute or two); weights and idf values are saved as float16 in
tokenlean/cache/data/duplicate_head.npz with the feature standardisation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.qqp_split import Pair, split_pairs
from tokenlean.cache.head import HEAD_PATH, LEXICAL, lexical_features

HIDDEN = 128
EPOCHS = 16
SEED = 0


def idf_table(pairs: list[Pair], min_count: int = 3) -> tuple[dict[str, float], float]:
    """Inverse document frequency of each word over the distinct texts of ``pairs`` (words seen at
    least ``min_count`` times; rarer ones get the ``unknown`` value, the idf of ``min_count - 1``)."""
    from collections import Counter

    from tokenlean.cache.head import _TOKEN

    texts = {t for a, b, _ in pairs for t in (a, b)}
    counts = Counter(w for t in texts for w in set(_TOKEN.findall(t.lower())))
    n = len(texts)
    idf = {w: float(np.log(n / c)) for w, c in counts.items() if c >= min_count}
    return idf, float(np.log(n / (min_count - 1)))


def pair_inputs(
    pairs: list[Pair], table: dict[str, np.ndarray], idf: tuple[dict[str, float], float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw lexical features, vector features ``[u*v, |u-v|]`` and labels for ``pairs``."""
    u = np.vstack([table[a] for a, _, _ in pairs]).astype(np.float32)
    v = np.vstack([table[b] for _, b, _ in pairs]).astype(np.float32)
    cosines = np.einsum("ij,ij->i", u, v)
    lexical = np.array(
        [lexical_features(a, b, float(c), *idf) for (a, b, _), c in zip(pairs, cosines, strict=True)],
        dtype=np.float32,
    )
    labels = np.array([label for *_, label in pairs], dtype=np.float32)
    return lexical, np.hstack([u * v, np.abs(u - v)]), labels


def hit_at(scores: np.ndarray, labels: np.ndarray, false_hit: float) -> float:
    """The share of duplicates whose score clears the lowest threshold with <= ``false_hit`` false hits."""
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(false_hit * len(negatives)))
    cut = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float(np.mean(scores[labels == 1] > cut))


def train(
    fit: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[dict[str, float]]]:
    """Train on ``fit``; keep the epoch with the best val hit rate at <= 1% false hits."""
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # faster than two spinning threads on a shared CPU
    mean, scale = fit[0].mean(axis=0), fit[0].std(axis=0) + 1e-6
    x_fit = torch.from_numpy(np.hstack([(fit[0] - mean) / scale, fit[1]]))
    y_fit = torch.from_numpy(fit[2])
    x_val = torch.from_numpy(np.hstack([(val[0] - mean) / scale, val[1]]))
    first, last = torch.nn.Linear(x_fit.shape[1], HIDDEN), torch.nn.Linear(HIDDEN, 1)
    model = torch.nn.Sequential(first, torch.nn.ReLU(), torch.nn.Dropout(0.2), last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best: tuple[float, dict[str, np.ndarray]] = (-1.0, {})
    history = []
    for epoch in range(EPOCHS):
        model.train()
        for batch in torch.split(torch.randperm(len(x_fit)), 256):
            optimiser.zero_grad()
            loss_fn(model(x_fit[batch])[:, 0], y_fit[batch]).backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            scores = model(x_val)[:, 0].numpy()
        row = {
            "epoch": epoch + 1,
            **{f"val_hit_at_{f}": hit_at(scores, val[2], f) for f in (0.005, 0.01, 0.02)},
        }
        history.append(row)
        print(row, flush=True)
        if row["val_hit_at_0.01"] > best[0]:
            best = (
                row["val_hit_at_0.01"],
                {
                    "w0": first.weight.detach().numpy().T.copy(),
                    "b0": first.bias.detach().numpy().copy(),
                    "w1": last.weight.detach().numpy().T.copy(),
                    "b1": last.bias.detach().numpy().copy(),
                },
            )
    return {"mean": mean, "scale": scale, **best[1]}, history


def save(weights: dict[str, np.ndarray], idf: tuple[dict[str, float], float], path: Path) -> None:
    """float16 weights and idf values (float32 standardisation), the depth, the feature names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {k: v.astype(np.float16) for k, v in weights.items() if k[0] in "wb"}
    arrays |= {"mean": weights["mean"].astype(np.float32), "scale": weights["scale"].astype(np.float32)}
    words = sorted(idf[0])
    arrays |= {"vocabulary": np.array(words), "idf": np.array([idf[0][w] for w in words], dtype=np.float16)}
    np.savez_compressed(
        path, depth=np.array(2), features=np.array(LEXICAL), unknown_idf=np.array(idf[1]), **arrays
    )


def main() -> None:
    from bench.cache import embed_all

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HEAD_PATH)
    parser.add_argument("--fit-pairs", type=int, default=None, help="first N fit pairs (default all)")
    parser.add_argument("--val-pairs", type=int, default=None, help="first N val pairs (default all)")
    parser.add_argument("--no-mrpc", action="store_true", help="train on QQP fit pairs only")
    args = parser.parse_args()
    from bench.cache_qqp import mrpc_pairs

    whole = split_pairs()
    extra = [] if args.no_mrpc else mrpc_pairs("train")
    splits = {"fit": whole["fit"][: args.fit_pairs] + extra, "val": whole["val"][: args.val_pairs]}
    texts = [t for name in ("fit", "val") for a, b, _ in splits[name] for t in (a, b)]
    table, _ = embed_all(texts)
    started = time.perf_counter()
    idf = idf_table(whole["fit"] + extra)  # word counts need no embedding: all fit texts
    fit, val = pair_inputs(splits["fit"], table, idf), pair_inputs(splits["val"], table, idf)
    print(f"features: {time.perf_counter() - started:.0f} s", flush=True)
    weights, _ = train(fit, val)
    save(weights, idf, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
