"""The end-to-end benchmark's mixed workload, built from ../shared/data with fixed seeds.

Five slices, each request a chat completion body plus what its quality is judged against:

- ``chat``: ShareGPT first turns, some asked twice word for word; QQP duplicate pairs (the second
  text re-asks the first in other words) and QQP near misses (same topic, another question), from
  the ``test`` part of ``bench.qqp_split`` (never used to tune the cache). Quality: no near miss is
  answered from the cache (a false hit).
- ``rag``: HotpotQA distractor questions with their ten paragraphs, and NaturalQuestions with its
  gold passage; quality: the gold answer appears in the answer.
- ``classify``: SST-2, TREC and AG News test queries, zero-shot with the task in the system prompt;
  the request names the task's demonstration pool (``tokenlean.demos.pool``), which only a pipeline
  with a demos stage reads. Quality: the label word is the answer's first word.
- ``gsm8k``: the 8-shot chain-of-thought prompt (``prompt_original.txt``) and a test question;
  quality: the last number of the answer equals the gold answer.
- ``list``: MT-Bench first turns (the SoT router never saw them); quality: a non-empty answer of at
  least 20 words (no reference answers exist for most of them; see the JSON's ``agreement``).

``phase`` 0 requests run before phase 1 (second askings come after the first has been answered).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from bench.common import DATA

__all__ = ["Item", "build_workload", "judge"]

SEED = 16
SYSTEM = "You are a helpful assistant."
RAG_SYSTEM = "Answer the question from the documents. Answer with a few words only."


@dataclass
class Item:
    """One request of the workload."""

    slice: str
    kind: str
    body: dict[str, Any]
    gold: Any = None
    phase: int = 0
    pair: int | None = None  # near misses and paraphrases: index of the first asking
    meta: dict[str, Any] = field(default_factory=dict)


def _chat(question: str, max_tokens: int, system: str = SYSTEM) -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def _chat_slice(rng: random.Random, n: int) -> list[Item]:
    from bench.qqp_split import split_pairs

    turns = json.loads((DATA / "chat_traces/sharegpt_mlenergy/ShareGPT_V3_filtered_1000.json").read_text())
    firsts = [c["conversations"][0]["value"] for c in turns if c["conversations"]]
    firsts = [t for t in firsts if 20 < len(t) < 1500]
    items = [Item("chat", "sharegpt", _chat(t, 48)) for t in rng.sample(firsts, n)]
    items += [Item("chat", "repeat", dict(items[i].body), phase=1) for i in range(min(3, n))]
    test = split_pairs()["test"]
    dups = rng.sample([p for p in test if p[2] == 1 and len(p[0]) < 200], n // 2)
    misses = rng.sample([p for p in test if p[2] == 0 and len(p[0]) < 200], n // 2)
    for kind, pairs in (("paraphrase", dups), ("near_miss", misses)):
        for a, b, _ in pairs:
            items.append(Item("chat", kind + "_first", _chat(a, 48)))
            items.append(Item("chat", kind, _chat(b, 48), phase=1, pair=len(items) - 1))
    return items


def _documents_prompt(documents: list[str], question: str) -> dict[str, Any]:
    text = "\n\n".join(documents) + f"\n\nQuestion: {question}"
    return _chat(text, 16, RAG_SYSTEM)


def _rag_slice(rng: random.Random, n: int) -> list[Item]:
    hotpot = json.loads((DATA / "multidoc_qa/hipporag_v1_samples/hotpotqa_train.json").read_text())
    items = []
    for row in rng.sample(hotpot, n // 2):
        docs = [f"{title}\n{''.join(sentences).strip()}" for title, sentences in row["context"]]
        items.append(Item("rag", "hotpotqa", _documents_prompt(docs, row["question"]), [row["answer"]]))
    lines = (DATA / "multidoc_qa/lost_in_the_middle/nq-open-oracle.jsonl").read_text().splitlines()
    for line in rng.sample(lines, n - n // 2):
        row = json.loads(line)
        docs = [f"{c['title']}\n{c['text']}" for c in row["ctxs"]]
        items.append(Item("rag", "nq", _documents_prompt(docs, row["question"]), row["answers"]))
    return items


def _classify_slice(rng: random.Random, n: int) -> list[Item]:
    from bench.demos import TASKS, load_task

    items = []
    for task in ("sst2", "trec", "agnews"):
        _, queries = load_task(task, queries=300)
        for example in rng.sample(queries, n // 3):
            body = _chat(example.input, 4, TASKS[task]["system"])
            body["tokenlean"] = {"demos": {"pool": task}}  # how many: the profile's default
            items.append(Item("classify", task, body, example.label))
    return items


def _gsm8k_slice(rng: random.Random, n: int) -> list[Item]:
    shots = (DATA / "gsm8k/prompt_original.txt").read_text().strip()
    rows = [json.loads(line) for line in (DATA / "gsm8k/test.jsonl").read_text().splitlines()]
    items = []
    for row in rng.sample(rows, n):
        question = f"Question: {row['question']}\nLet's think step by step"
        body = {
            "messages": [{"role": "user", "content": f"{shots}\n\n{question}"}],
            "max_tokens": 96,
            "temperature": 0,
        }
        items.append(Item("gsm8k", "gsm8k", body, row["answer"].split("####")[-1].strip().replace(",", "")))
    return items


def _list_slice(rng: random.Random, n: int) -> list[Item]:
    rows = [
        json.loads(line)
        for line in (DATA / "sot_questions/fastchat/mt_bench_question.jsonl").read_text().splitlines()
    ]
    return [Item("list", row["category"], _chat(row["turns"][0], 160)) for row in rng.sample(rows, n)]


def build_workload(per_slice: int) -> list[Item]:
    """Every slice's requests (about ``per_slice`` each; chat has its repeats and pairs on top)."""
    rng = random.Random(SEED)
    return [
        *_chat_slice(rng, per_slice // 2),
        *_rag_slice(rng, per_slice),
        *_classify_slice(rng, per_slice),
        *_gsm8k_slice(rng, max(4, per_slice // 2)),
        *_list_slice(rng, per_slice),
    ]


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def judge(item: Item, answer: str, cache_hit: bool) -> float | None:
    """The item's quality score in [0, 1], or None where the slice has no per-item check."""
    if item.slice == "rag":
        return float(any(_normal(g) and _normal(g) in _normal(answer) for g in item.gold))
    if item.slice == "classify":
        words = _normal(answer).split()
        return float(bool(words) and words[0] == item.gold.lower())
    if item.slice == "gsm8k":
        numbers = re.findall(r"-?\d+(?:\.\d+)?", answer.replace(",", ""))
        return float(bool(numbers) and float(numbers[-1]) == float(item.gold))
    if item.slice == "list":
        return float(len(answer.split()) >= 20)
    if item.kind == "near_miss":
        return 0.0 if cache_hit else 1.0
    return None
