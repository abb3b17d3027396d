"""The fit / validation / test split of the labelled QQP pairs, by text cluster (deterministic).

``../shared/data/cache_paraphrase/qqp_labelled/qqp_labelled_dev.json.gz`` holds labelled question
pairs whose non-duplicates are near misses (same topic, another question). A question often sits
in several pairs, so splitting the pairs at random would put one text (and its duplicates) in two
splits and let a tuned decision see its test questions. Here every text is a node and every pair,
duplicate or not, an edge; each connected component (union-find) goes whole to one split, chosen
by a hash of its smallest text: about 60% of pairs to ``fit`` (train a decision), 20% to ``val``
(choose thresholds) and 20% to ``test`` (report only, never tuned on). No text, and so no
duplicate cluster, is in two splits. The same file always gives the same split.

    python -m bench.qqp_split        # prints the split's sizes and checks it is disjoint
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Literal

from bench.common import DATA

__all__ = ["QQP_FILE", "SPLITS", "Pair", "cluster_ids", "load_pairs", "split_pairs"]

QQP_FILE = DATA / "cache_paraphrase" / "qqp_labelled" / "qqp_labelled_dev.json.gz"
SPLITS: tuple[str, ...] = ("fit", "val", "test")
Pair = tuple[str, str, int]  # (text_a, text_b, label: 1 duplicate, 0 near miss)
Split = Literal["fit", "val", "test"]


def load_pairs(path: Path = QQP_FILE) -> list[Pair]:
    """Every labelled pair of the file, in file order (pairs of a text with itself are dropped)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)
    return [(r["text_a"], r["text_b"], int(r["label"])) for r in rows if r["text_a"] != r["text_b"]]


def _components(pairs: list[Pair]) -> dict[str, str]:
    """Text -> the smallest text of its connected component (union-find with path halving)."""
    parent: dict[str, str] = {}

    def find(text: str) -> str:
        parent.setdefault(text, text)
        while parent[text] != text:
            parent[text] = parent[parent[text]]
            text = parent[text]
        return text

    for a, b, _ in pairs:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)  # the root stays the smallest text
    return {text: find(text) for text in parent}


def _bucket(root: str) -> Split:
    """The split of a component, from a hash of its smallest text (stable across runs and machines)."""
    fraction = int.from_bytes(hashlib.sha256(root.encode("utf-8")).digest()[:8], "big") / 2**64
    return "fit" if fraction < 0.6 else "val" if fraction < 0.8 else "test"


def split_pairs(pairs: list[Pair] | None = None) -> dict[str, list[Pair]]:
    """``{"fit": [...], "val": [...], "test": [...]}``, each in file order."""
    pairs = load_pairs() if pairs is None else pairs
    root = _components(pairs)
    out: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        out[_bucket(root[pair[0]])].append(pair)
    return out


def cluster_ids(pairs: list[Pair]) -> list[int]:
    """Per pair, the index of its text cluster among ``pairs`` (pairs sharing a text share one)."""
    root = _components(pairs)
    index: dict[str, int] = {}
    return [index.setdefault(root[a], len(index)) for a, _, _ in pairs]


def main() -> None:
    splits = split_pairs()
    texts = {name: {t for a, b, _ in pairs for t in (a, b)} for name, pairs in splits.items()}
    for name, pairs in splits.items():
        duplicates = sum(label for *_, label in pairs)
        print(f"{name}: {len(pairs)} pairs ({duplicates} duplicates), {len(texts[name])} texts")
    shared = (texts["fit"] & texts["val"]) | (texts["fit"] & texts["test"]) | (texts["val"] & texts["test"])
    print(f"texts in two splits: {len(shared)}")


if __name__ == "__main__":
    main()
