"""Would the embedded chat model's hidden states separate duplicate questions better than MiniLM?

    nice -n 15 python -m bench.cache_lm_states      # about 8 minutes on the 2-core box

Why ask: the SoT router gained most of its cross-dataset accuracy by reading SmolLM2-135M's
hidden state instead of the MiniLM sentence vector (tokenlean/reasoning/sot/states.py), and the
semantic cache's pair decision is stuck at 33-35% of QQP duplicates at <= 2% false hits whatever
is learnt on MiniLM (docs/cache.md). So: the same question for the cache, on a probe's budget.

Probe: the first 6,000 pairs of the QQP fit split and the first 4,000 of the val split
(bench/qqp_split.py; the test split is never read). Each text goes through SmolLM2's first 22
layers once (plain text, no chat template, at most 96 tokens); the encodings are the mean over
tokens after layers 8, 15 and 22 and the last token's state after layer 15. Every encoding,
MiniLM's included, is centred on the fit texts' mean and normalised (an LM's states share a large
common direction that swamps cosine otherwise). Each is scored two ways on val: plain cosine,
and a standardised logistic regression over ``[u*v, |u-v|, cos]`` fit on the 6,000 fit pairs.

Measured 2026-12-07 (duplicates hit on the 4,000 val pairs at <= 0.5% / <= 2% false hits):

    encoding     plain cosine      logistic regression (C=0.01)
    mean, L8     0.8% / 3.4%       3.5% / 9.2%
    mean, L15    0.5% / 3.4%       1.0% / 5.1%
    mean, L22    0.1% / 1.4%       3.4% / 10.1%
    last, L15    0.3% / 1.1%       2.5% / 9.7%
    MiniLM      10.6% / 23.6%      4.8% / 16.5%

The chat model's states are far worse than MiniLM at telling a reworded question from a near miss
(a tenth of its hits by cosine): a model that was never trained for sentence similarity places
texts by their topic and form, which is what a near miss shares with its partner. The router's
question (what shape of answer is coming) is one the chat model answers; this one is not. Not
pursued further; the shipped head over MiniLM stays the decision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.cache import embed_all
from bench.cache_head import hit_at
from bench.qqp_split import Pair, split_pairs

FIT_PAIRS = 6000
VAL_PAIRS = 4000
MEAN_LAYERS = (8, 15, 22)
LAST_LAYER = 15
MAX_TOKENS = 96
BATCH = 32


def lm_states(texts: list[str]) -> dict[str, np.ndarray]:
    """Per encoding name, one row per text (the model runs its first ``max(MEAN_LAYERS)`` layers)."""
    import torch
    from transformers import AutoModel

    from tokenlean.models import load_pretrained

    tokenizer, model = load_pretrained(None, AutoModel, torch.float32)
    model.layers = model.layers[: max(MEAN_LAYERS)]
    tokenizer.padding_side = "right"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rows: dict[str, list[Any]] = {name: [None] * len(texts) for name in encoding_names()}
    order = np.argsort([len(t) for t in texts])  # similar lengths share a padded batch
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            batch = order[start : start + BATCH]
            encoded = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
            )
            states = model(**encoded, output_hidden_states=True).hidden_states
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            last = encoded["attention_mask"].sum(1) - 1
            for layer in MEAN_LAYERS:
                means = (states[layer] * mask).sum(1) / mask.sum(1)
                for k, i in enumerate(batch):
                    rows[f"mean, L{layer}"][i] = means[k].numpy()
            for k, i in enumerate(batch):
                rows[f"last, L{LAST_LAYER}"][i] = states[LAST_LAYER][k, last[k]].numpy()
    return {name: np.stack(vectors) for name, vectors in rows.items()}


def encoding_names() -> list[str]:
    return [f"mean, L{layer}" for layer in MEAN_LAYERS] + [f"last, L{LAST_LAYER}"]


def pair_features(vectors: np.ndarray, index: dict[str, int], pairs: list[Pair]) -> np.ndarray:
    a = vectors[[index[p[0]] for p in pairs]]
    b = vectors[[index[p[1]] for p in pairs]]
    return np.hstack([a * b, np.abs(a - b), (a * b).sum(1, keepdims=True)])


def compare(name: str, vectors: np.ndarray, index: dict[str, int], fit: list[Pair], val: list[Pair]) -> str:
    """One table row: plain cosine and the logistic regression, on val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit_rows = sorted({index[t] for a, b, _ in fit for t in (a, b)})
    vectors = vectors - vectors[fit_rows].mean(0)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([p[2] for p in val])
    cosine = pair_features(vectors, index, val)[:, -1]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    model.fit(pair_features(vectors, index, fit), [p[2] for p in fit])
    learnt = model.decision_function(pair_features(vectors, index, val))
    cells = [f"{hit_at(s, labels, 0.005):.1%} / {hit_at(s, labels, 0.02):.1%}" for s in (cosine, learnt)]
    return f"{name:12s} {cells[0]:17s} {cells[1]}"


def main() -> None:
    splits = split_pairs()
    fit, val = splits["fit"][:FIT_PAIRS], splits["val"][:VAL_PAIRS]
    texts = sorted({t for a, b, _ in fit + val for t in (a, b)})
    index = {t: i for i, t in enumerate(texts)}
    encodings = lm_states(texts)
    minilm, _ = embed_all(texts)
    encodings["MiniLM"] = np.stack([minilm[t] for t in texts])
    print("encoding     plain cosine      logistic regression (C=0.01)")
    for name, vectors in encodings.items():
        print(compare(name, vectors, index, fit, val), flush=True)


if __name__ == "__main__":
    main()
