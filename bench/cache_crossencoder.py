"""A full cross-encoder for the semantic cache: MiniLM-L6 reads both questions as one sequence.

    nice -n 15 python -m bench.cache_crossencoder                    # 2 epochs, bottom 2 layers frozen
    nice -n 15 python -m bench.cache_crossencoder --frozen 0 --epochs 1

Why: the bi-encoder (stock or fine-tuned, bench/cache_finetune.py), heads over its two vectors
(tokenlean/cache/head.py) and a late-interaction scorer whose bottom layers read each question
alone (bench/cache_cross.py) all stayed near 34% of QQP val duplicates at <= 2% false hits. A
cross-encoder lets every token of one question attend to the other's from the first layer on,
which is the usual way to separate near misses ("lose weight" / "lose belly fat"); it costs one
forward pass per (query, candidate) pair, so in a cache it can only run on the few candidates a
lookup retrieves.

The word embeddings and the bottom ``--frozen`` layers keep the installed MiniLM's weights (so
only the top layers and a linear read-out over the mean-pooled states would need shipping); the
rest learn with binary cross entropy on the QQP fit split plus MRPC's train file without GLUE's
dev pairs, each pair in a random order per epoch. Val chooses the epoch (duplicates hit at <= 1%
false hits); ``--combine`` scores the kept weights alone and added to the shipped head's logit\n(the weight chosen on val), then once on the QQP test split and MRPC test.

Measured (2026-12-07, defaults: bottom 2 layers frozen, batch 32, lr 3e-5, two threads, ~16 min
per epoch; val on its first 6,000 pairs while training), duplicates hit at <= 0.5% / 1% / 2% / 5%
false hits:

    QQP val (6,000 pairs), epoch 1 / 2          7.9 / 14.2 / 24.0 / 43.0,  9.8 / 16.7 / 26.1 / 45.2
    QQP test: shipped head                      12.5 / 20.1 / 32.9 / 51.9
    QQP test: cross-encoder (epoch 2)            9.8 / 15.8 / 26.7 / 49.7
    QQP test: head + 0.25 x cross-encoder       12.6 / 21.9 / 33.8 / 53.2
    MRPC test: shipped head / cross-encoder      6.2 / 10.9 / 13.6 / 31.0,  12.5 / 17.5 / 27.0 / 38.2

So not wired in: about one point over the head on QQP at <= 2% false hits for a forward pass
per candidate and ~14 MB of weights (docs/cache.md, "What is weak").
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache_finetune import CACHE, descend, report, warmup_then_linear
from bench.qqp_split import Pair, split_pairs

MAX_TOKENS = 128  # both questions together; QQP pairs are ~40 word pieces


class CrossEncoder:
    """MiniLM over ``[CLS] a [SEP] b [SEP]``, mean-pooled, one linear logit."""

    def __init__(self, frozen: int) -> None:
        import torch

        from tokenlean.embeddings import shared_embedder

        model = shared_embedder()._model
        self.tokenizer = model.tokenizer
        self.bert = copy.deepcopy(model[0].auto_model).train()
        self.read_out = torch.nn.Linear(self.bert.config.hidden_size, 1)
        for p in self.bert.embeddings.parameters():
            p.requires_grad_(False)
        for layer in self.bert.encoder.layer[:frozen]:
            for p in layer.parameters():
                p.requires_grad_(False)

    def parameters(self) -> list[Any]:
        trainable = [p for p in self.bert.parameters() if p.requires_grad]
        return trainable + list(self.read_out.parameters())

    def logits(self, pairs: list[tuple[str, str]]) -> Any:
        batch = self.tokenizer(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        hidden = self.bert(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.read_out(pooled).squeeze(-1)

    def train(self, on: bool) -> None:
        self.bert.train(on)
        self.read_out.train(on)


def length_batches(pairs: list[Pair], size: int, rng: random.Random) -> list[list[Pair]]:
    """Random batches of pairs of similar length (less padding), in random order, each pair's
    two texts swapped with probability 1/2 (the score should not depend on which is the query)."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    batches: list[list[Pair]] = []
    chunk = size * 50
    for start in range(0, len(order), chunk):
        group = sorted(order[start : start + chunk], key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        batches += [[pairs[i] for i in group[s : s + size]] for s in range(0, len(group), size)]
    rng.shuffle(batches)
    return [[(b, a, y) if rng.random() < 0.5 else (a, b, y) for a, b, y in batch] for batch in batches]


def scores(model: CrossEncoder, pairs: list[Pair]) -> np.ndarray:
    """The model's logit for every pair, each scored in both orders and averaged."""
    import torch

    model.train(False)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    out = np.zeros(len(pairs))
    with torch.inference_mode():
        for start in range(0, len(order), 128):
            chunk = order[start : start + 128]
            forward = model.logits([(pairs[i][0], pairs[i][1]) for i in chunk])
            backward = model.logits([(pairs[i][1], pairs[i][0]) for i in chunk])
            out[chunk] = ((forward + backward) / 2).numpy()
    model.train(True)
    return out


def train(args: argparse.Namespace) -> None:
    import torch

    from bench.cache_qqp import mrpc_fit_and_dev

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    whole = split_pairs()
    fit = whole["fit"] + mrpc_fit_and_dev()[0]
    val = whole["val"][: args.val_pairs]
    val_labels = np.array([p[2] for p in val])
    model = CrossEncoder(args.frozen)
    steps = args.epochs * ((len(fit) + args.batch - 1) // args.batch)
    optimiser = torch.optim.AdamW(
        [
            {"params": [p for p in model.bert.parameters() if p.requires_grad], "lr": args.lr},
            {"params": list(model.read_out.parameters()), "lr": 1e-3},
        ],
        weight_decay=0.01,
    )
    schedule = warmup_then_linear(optimiser, steps)
    best = -1.0
    started = time.perf_counter()
    print(f"fit {len(fit)} pairs, val {len(val)}, {steps} steps", flush=True)
    for epoch in range(1, args.epochs + 1):
        for step, batch in enumerate(length_batches(fit, args.batch, rng)):
            labels = torch.tensor([float(y) for *_, y in batch])
            logits = model.logits([(a, b) for a, b, _ in batch])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            descend(loss, optimiser, schedule, model.parameters())
            if step % 100 == 0:
                print(
                    f"epoch {epoch} step {step} loss {loss.item():.3f} {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
        row = report(scores(model, val), val_labels)
        print({"epoch": epoch, **row, "seconds": round(time.perf_counter() - started)}, flush=True)
        if row["hit_at_0.01"] > best:
            best = row["hit_at_0.01"]
            torch.save({"bert": model.bert.state_dict(), "read_out": model.read_out.state_dict()}, args.out)
            print(f"kept epoch {epoch} in {args.out}", flush=True)


def load(args: argparse.Namespace) -> CrossEncoder:
    """The kept weights of ``train``."""
    import torch

    torch.set_num_threads(args.threads)
    model = CrossEncoder(args.frozen)
    state = torch.load(args.out)
    model.bert.load_state_dict(state["bert"])
    model.read_out.load_state_dict(state["read_out"])
    return model


def gated_logits(pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """The shipped decision on ``pairs`` as a logit (-inf where vetoed or under the floor), and
    plain cosine."""
    from bench.cache import embed_all
    from bench.cache_qqp import decision_scores

    table, _ = embed_all(sorted({t for a, b, _ in pairs for t in (a, b)}))
    scores = decision_scores(pairs, table)
    probability = np.clip(scores["learned (head)"], 1e-6, 1 - 1e-6)
    logit = np.where(np.isinf(scores["learned (head)"]), -np.inf, np.log(probability / (1 - probability)))
    return logit, scores["plain cosine"]


def combine(args: argparse.Namespace) -> None:
    """The cross-encoder alone and added to the shipped head's logit (same gate), the weight of
    the sum chosen on val at <= 1% false hits; then both scored once on QQP test and MRPC test."""
    from bench.cache_qqp import mrpc_test

    model = load(args)
    whole = split_pairs()
    sets = {"qqp_val": whole["val"], "qqp_test": whole["test"], "mrpc_test": mrpc_test()}
    rows: dict[str, dict[str, np.ndarray]] = {}
    for name, pairs in sets.items():
        head, cosine = gated_logits(pairs)
        cross = scores(model, pairs)
        rows[name] = {
            "labels": np.array([p[2] for p in pairs]),
            "head": head,
            "cross": cross,
            "cosine": cosine,
        }
    val = rows["qqp_val"]
    weights = [0.25, 0.5, 1.0, 2.0, 4.0]
    chosen = max(weights, key=lambda w: report(val["head"] + w * val["cross"], val["labels"])["hit_at_0.01"])
    print(f"weight chosen on val: {chosen}", flush=True)
    for name, row in rows.items():
        gate = np.where(np.isinf(row["head"]), -np.inf, 0.0)
        for label, values in (
            ("plain cosine", row["cosine"]),
            ("shipped head", row["head"]),
            ("cross-encoder alone", row["cross"]),
            ("cross-encoder, gated", row["cross"] + gate),
            (f"head + {chosen} x cross-encoder", row["head"] + chosen * row["cross"]),
        ):
            print(name, label, report(values, row["labels"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frozen", type=int, default=2, help="bottom layers kept as installed")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--val-pairs", type=int, default=None, help="score only the first N val pairs")
    parser.add_argument("--out", type=Path, default=CACHE / "cache_crossencoder.pt")
    parser.add_argument(
        "--combine",
        action="store_true",
        help="score the kept weights, alone and with the head, on val and test",
    )
    args = parser.parse_args()
    combine(args) if args.combine else train(args)


if __name__ == "__main__":
    main()
