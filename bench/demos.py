"""Benchmark: retrieval-based demonstration selection on SST-2, TREC and AG News.

    python -m bench.demos            # default: accuracy on a fixed-seed subset (see --acc-queries)
    python -m bench.demos --full     # accuracy on all 300 queries per task and k = 2, 4, 8
    python -m bench.demos --relevance-only   # only whether demos are added where they belong

The relevance part (``bench/demos_relevance.py``) mixes each pool's test queries with ShareGPT
first turns, tunes the relevance rule on one split and reports the shipped rule on another.

Data: ../shared/data/icl_classification. The train split is the pool; 300 test queries per task
are drawn with seed 0. AG News ships only a test file (7,600 rows): it is shuffled with seed 0,
the first 300 rows are the queries and the other 7,300 the pool; its text is the title and the
description cut to 40 words. Accuracy is scored the standard ICL way: one forward pass of the
embedded SmolLM2 over the chat-templated prompt (the ``demos`` stage's output) and the label whose
verbaliser's first token has the highest next-token logit wins (no free generation). Model-free
figures (prompt tokens, label agreement of the retrieved demonstrations with the gold label) use
all 300 queries and every configuration. Latency pools of 1k/10k are real examples; the 100k
pool replicates the ~19.7k real vectors with small random perturbations (no paraphrases are
generated), so the approximate index sees distinct points.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from bench.common import DATA, RESULTS, environment, goal, median, percentile, print_table, write_results
from tokenlean.middleware.types import Message, Request
from tokenlean.selectors import DemoPool, DemoStage, Example, SelectionConfig, select

ICL = DATA / "icl_classification"
SEED = 0
POOL_CACHE = Path.home() / ".cache" / "tokenlean" / "bench-demos"
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {
        "system": "Classify the sentiment of the movie review. Answer with one word: positive or negative.",
        "labels": {"0": "negative", "1": "positive"},
    },
    "trec": {
        "system": "Classify what the question asks for. Answer with one word: "
        "Abbreviation, Description, Entity, Person, Location or Number.",
        "labels": {
            "ABBR": "Abbreviation",
            "DESC": "Description",
            "ENTY": "Entity",
            "HUM": "Person",
            "LOC": "Location",
            "NUM": "Number",
        },
    },
    "agnews": {
        "system": "Classify the topic of the news article. Answer with one word: World, Sports, Business or Technology.",
        "labels": {"1": "World", "2": "Sports", "3": "Business", "4": "Technology"},
    },
}


# data ---------------------------------------------------------------------------------------


def _sst2(names: dict[str, str]) -> tuple[list[Example], list[Example]]:
    def read(name: str) -> list[Example]:
        lines = (ICL / "sst2" / name).read_text(encoding="utf-8").splitlines()
        return [Example(line[2:], names[line[0]], names[line[0]]) for line in lines if line.strip()]

    return read("stsa.binary.train"), read("stsa.binary.test")


def _trec(names: dict[str, str]) -> tuple[list[Example], list[Example]]:
    def read(name: str) -> list[Example]:
        rows = []
        for line in (ICL / "trec" / name).read_text(encoding="latin-1").splitlines():
            tag, _, text = line.partition(" ")
            label = names[tag.split(":")[0]]
            rows.append(Example(text, label, label))
        return rows

    return read("train.txt"), read("test.txt")


def _agnews(names: dict[str, str]) -> tuple[list[Example], list[Example]]:
    with (ICL / "agnews" / "test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    examples = []
    for row in rows:
        words = row["Description"].replace("\\", " ").replace("#36;", "$").split()
        text = f"{row['Title'].strip()}: {' '.join(words[:40])}"
        examples.append(Example(text, names[row["Class Index"]], names[row["Class Index"]]))
    random.Random(SEED).shuffle(examples)
    return examples[300:], examples  # queries are drawn from examples[:300] below


def load_task(task: str, queries: int = 300) -> tuple[list[Example], list[Example]]:
    """(pool, fixed-seed test queries) for ``task``."""
    names = TASKS[task]["labels"]
    pool, test = {"sst2": _sst2, "trec": _trec, "agnews": _agnews}[task](names)
    if task == "agnews":
        return pool, test[:queries]
    return pool, random.Random(SEED).sample(test, queries)


def task_pool(task: str, examples: list[Example]) -> tuple[DemoPool, float | None]:
    """The task's pool, embedded once and then reloaded from disk, and the seconds embedding took.

    The embedding time is recorded beside the saved pool when it is built, so a run that reloads
    the pool still reports it (``None`` if it was never recorded).
    """
    folder = POOL_CACHE / task
    timing = folder / "embed_seconds.json"
    if (folder / "meta.json").exists():
        pool = DemoPool.load(folder)
        if len(pool) == len(examples) and pool.examples[:50] == examples[:50]:
            return pool, json.loads(timing.read_text())["seconds"] if timing.exists() else None
    started = time.perf_counter()
    pool = DemoPool.build(task, examples)
    seconds = time.perf_counter() - started
    pool.save(folder)
    timing.write_text(json.dumps({"seconds": round(seconds, 2), "date": time.strftime("%Y-%m-%d %H:%M")}))
    return pool, seconds


# prompts ------------------------------------------------------------------------------------


def fixed_block(pool: DemoPool, size: int = 32) -> tuple[Example, ...]:
    """A fixed, label-balanced block: labels in turn, examples drawn with the seed."""
    rng = random.Random(SEED)
    by_label = {label: [e for e in pool.examples if e.label == label] for label in pool.labels}
    chosen: list[Example] = []
    while len(chosen) < size:
        for label in pool.labels:
            if len(chosen) < size:
                chosen.append(rng.choice(by_label[label]))
    rng.shuffle(chosen)
    return tuple(chosen)


def configurations(ks: list[int]) -> list[tuple[str, str, int]]:
    """(name, method, k) rows in table order."""
    rows = [("0-shot", "none", 0)]
    for method in ("random", "knn", "mmr"):
        rows += [(f"{method} k={k}", method, k) for k in ks]
    return rows + [("fixed 32", "fixed", 32)]


def build_prompts(
    task: str, pool: DemoPool, queries: list[Example], vectors: Any, ks: list[int]
) -> dict[str, Any]:
    """Every configuration's messages per query, plus demo ids and label agreement."""
    stage = DemoStage(pools={task: pool}, pool=task)
    system = Message("system", TASKS[task]["system"])
    block = fixed_block(pool)
    out: dict[str, Any] = {}
    for name, method, k in configurations(ks):
        prompts, agreement = [], []
        for query, vector in zip(queries, vectors, strict=True):
            request = Request(messages=(system, Message("user", query.input)))
            if method == "fixed":
                demos = block
            elif method == "none":
                demos = ()
            else:
                config = SelectionConfig(k=k, method=method, seed=SEED)
                demos = select(pool, query.input, config, query_vector=vector).examples
            prompts.append(stage.insert(request, demos, "turns")[0].messages)
            if demos:
                agreement.append(sum(d.label == query.label for d in demos) / len(demos))
        out[name] = {"messages": prompts, "agreement": sum(agreement) / len(agreement) if agreement else None}
    return out


# scoring ------------------------------------------------------------------------------------


class Scorer:
    """Label log-likelihood scoring with the embedded model (first verbaliser token, batched)."""

    def __init__(self, dtype: str = "bfloat16") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tokenlean.models import default_model_dir

        folder = default_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
        self.tokens_run = 0
        forward = inspect.signature(self.model.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"

    def render(self, messages: Any) -> list[int]:
        """Token ids of the chat-templated prompt, ending where the assistant answer starts."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def label_ids(self, verbalisers: list[str]) -> list[int]:
        """First token of each verbaliser; they must differ or scoring cannot tell labels apart."""
        ids = [self.tokenizer.encode(v, add_special_tokens=False)[0] for v in verbalisers]
        assert len(set(ids)) == len(ids), verbalisers
        return ids

    def predict(
        self, prompts: list[list[int]], label_ids: list[int], prefix: list[int] | None = None
    ) -> list[int]:
        """Index of the best label per prompt; a shared ``prefix`` is run once and its KV reused."""
        import torch

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        predictions = [0] * len(prompts)
        cache = self._prefix_cache(prefix) if prefix else None
        batch: list[int] = []
        for i in order:
            batch.append(i)
            if len(batch) * len(prompts[i]) >= 2048 or len(batch) == 16 or i == order[-1]:
                with torch.inference_mode():
                    logits = self._last_logits([prompts[j] for j in batch], cache, len(prefix or []))
                best = logits[:, label_ids].argmax(dim=1).tolist()
                for j, b in zip(batch, best, strict=True):
                    predictions[j] = b
                batch = []
        return predictions

    def _prefix_cache(self, prefix: list[int]) -> Any:
        import torch

        self.tokens_run += len(prefix)
        with torch.inference_mode():
            out = self.model.model(input_ids=torch.tensor([prefix]), use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values  # renamed in transformers 5
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _last_logits(self, rows: list[list[int]], prefix_kv: Any, prefix_len: int) -> Any:
        import torch
        from transformers import DynamicCache

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0)
        mask = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for n, row in enumerate(rows):
            ids[n, : len(row)] = torch.tensor(row)
            mask[n, prefix_len : prefix_len + len(row)] = 1
        self.tokens_run += sum(len(r) for r in rows)
        kwargs: dict[str, Any] = {}
        if prefix_kv is not None:
            cache = DynamicCache()
            for layer, (k, v) in enumerate(prefix_kv):
                cache.update(
                    k.expand(len(rows), -1, -1, -1).contiguous(),
                    v.expand(len(rows), -1, -1, -1).contiguous(),
                    layer,
                )
            kwargs[self._cache_arg] = cache
        hidden = self.model.model(
            input_ids=ids, attention_mask=mask, use_cache=prefix_kv is not None, **kwargs
        )
        last = torch.tensor([len(r) - 1 for r in rows])
        return self.model.lm_head(hidden.last_hidden_state[torch.arange(len(rows)), last]).float()


def _common_prefix(rows: list[list[int]]) -> int:
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        while length and row[:length] != first[:length]:
            length -= 1
    return length


def accuracy(
    scorer: Scorer, task: str, prompts: dict[str, Any], queries: list[Example], n: int, configs: list[str]
) -> dict[str, float]:
    """Accuracy of each configuration on the first ``n`` queries."""
    verbalisers = list(TASKS[task]["labels"].values())
    label_ids = scorer.label_ids(verbalisers)
    gold = [verbalisers.index(q.output) for q in queries[:n]]
    result = {}
    for name in configs:
        rendered = [scorer.render(m) for m in prompts[name]["messages"][:n]]
        started = time.perf_counter()
        if name == "fixed 32":  # one shared prefix: run it once, reuse its KV for every query
            cut = _common_prefix(rendered)
            predicted = scorer.predict([r[cut:] for r in rendered], label_ids, prefix=rendered[0][:cut])
        else:
            predicted = scorer.predict(rendered, label_ids)
        result[name] = sum(p == g for p, g in zip(predicted, gold, strict=True)) / n
        print(f"  {task} {name}: acc {result[name]:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return result


# latency ------------------------------------------------------------------------------------


def replicated_pool(examples: list[Example], vectors: Any, size: int) -> tuple[list[Example], Any]:
    """``size`` examples: the real ones, then copies whose vectors are perturbed and renormalised."""
    import numpy as np

    if size <= len(examples):
        return examples[:size], vectors[:size]
    rng = np.random.default_rng(SEED)
    extra = size - len(examples)
    base = vectors[np.arange(extra) % len(vectors)]
    noisy = base + rng.normal(0.0, 0.01, base.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    copies = [examples[i % len(examples)] for i in range(extra)]
    return examples + copies, np.concatenate([vectors, noisy]).astype(np.float32)


def latency(
    bank_examples: list[Example], bank_vectors: Any, queries: list[str], sizes: list[int]
) -> dict[str, Any]:
    """Build time, index kind, selection p50/p99 (query embedding included) and HNSW recall per size."""
    import faiss
    import torch

    torch.set_num_threads(1)  # one query: intra-op threads only spin-wait on a small shared CPU
    faiss.omp_set_num_threads(1)
    from tokenlean.embeddings import shared_embedder

    embedder = shared_embedder()
    embedder.embed(queries[:8])  # warm-up
    rows: dict[str, Any] = {}
    for size in sizes:
        examples, vectors = replicated_pool(bank_examples, bank_vectors, size)
        started = time.perf_counter()
        pool = DemoPool(f"lat{size}", examples, vectors, embedder=embedder)
        build_s = time.perf_counter() - started
        row: dict[str, Any] = {"size": size, "index": pool.index_kind, "build_s": round(build_s, 3)}
        row["load_average_1min"] = round(os.getloadavg()[0], 1)  # the CPU is shared: say how busy it was
        for method in ("knn", "mmr"):
            times, embeds = [], []
            for query in queries:
                selection = select(pool, query, SelectionConfig(k=4, method=method))
                times.append(selection.ms)
                embeds.append(selection.embed_ms)
            row[method] = {
                "p50_ms": round(median(times), 2),
                "p99_ms": round(percentile(times, 99), 2),
                "embed_p50_ms": round(median(embeds), 2),
            }
        if pool.index_kind != "flat":
            row["recall_at_4"] = _recall(pool, examples, vectors, embedder.embed(queries))
        if size == max(sizes):
            row.update(_persistence_seconds(pool))
        rows[str(size)] = row
        print(f"  pool {size}: {row}", flush=True)
    return rows


def _persistence_seconds(pool: DemoPool) -> dict[str, float]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        pool.save(folder)
        saved = time.perf_counter()
        DemoPool.load(folder)
        return {"save_s": round(saved - started, 3), "load_s": round(time.perf_counter() - saved, 3)}


def _recall(pool: DemoPool, examples: list[Example], vectors: Any, query_vectors: Any) -> float:
    exact = DemoPool("exact", examples, vectors, index="flat")
    hits = 0
    for vector in query_vectors:
        truth = set(exact.search(vector, 4)[1].tolist())
        hits += len(truth & set(pool.search(vector, 4)[1].tolist()))
    return round(hits / (4 * len(query_vectors)), 4)


# report -------------------------------------------------------------------------------------


def model_free(
    task: str, scorer: Scorer, ks: list[int]
) -> tuple[dict[str, Any], Any, DemoPool, list[Example]]:
    """Pool embedding and build, prompts, prompt tokens and label agreement for every configuration."""
    pool_examples, queries = load_task(task)
    pool, embed_s = task_pool(task, pool_examples)
    started = time.perf_counter()
    DemoPool(task, pool.examples, pool.vectors, embedder=pool.embedder)
    build_s = time.perf_counter() - started
    query_vectors = pool.embedder.embed([q.input for q in queries])
    prompts = build_prompts(task, pool, queries, query_vectors, ks)
    rows = {
        name: {
            "prompt_tokens": round(sum(len(scorer.render(m)) for m in entry["messages"]) / len(queries), 1),
            "label_agreement": None if entry["agreement"] is None else round(entry["agreement"], 4),
        }
        for name, entry in prompts.items()
    }
    info = {
        "pool_size": len(pool),
        "queries": len(queries),
        "pool_embed_s": None if embed_s is None else round(embed_s, 2),
        "index": pool.index_kind,
        "index_build_s": round(build_s, 4),
        "configs": rows,
    }
    return info, prompts, pool, queries


def goals(tasks: dict[str, Any], lat: dict[str, Any]) -> list[dict[str, Any]]:
    """The two goals of the issue, computed from the figures."""
    out = []
    best = {}
    for method in ("knn", "mmr"):
        name = f"{method} k=4"
        acc = [tasks[t]["configs"][name].get("accuracy") for t in tasks]
        fixed = [tasks[t]["configs"]["fixed 32"].get("accuracy") for t in tasks]
        ratio = [
            tasks[t]["configs"][name]["prompt_tokens"] / tasks[t]["configs"]["fixed 32"]["prompt_tokens"]
            for t in tasks
        ]
        if None not in acc and None not in fixed:
            best[method] = {
                "accuracy": round(sum(acc) / len(acc), 4),
                "fixed32_accuracy": round(sum(fixed) / len(fixed), 4),
                "token_ratio": round(max(ratio), 3),
            }
    if best:
        achieved = max(best.values(), key=lambda b: b["accuracy"] - b["fixed32_accuracy"])
        achieved = {**achieved, "method": next(m for m, b in best.items() if b is achieved)}
        out.append(
            goal(
                "kNN or MMR k=4 reaches fixed-32 accuracy (mean of 3 tasks) with <= 1/4 of its prompt tokens",
                "accuracy >= fixed 32, token ratio <= 0.25",
                achieved,
                lambda a: a["accuracy"] >= a["fixed32_accuracy"] and a["token_ratio"] <= 0.25,
            )
        )
    largest = lat[max(lat, key=int)]
    p50 = {m: largest[m]["p50_ms"] for m in ("knn", "mmr")}
    out.append(
        goal(
            f"selection p50 incl. query embedding at {largest['size']} examples",
            "<= 25 ms (kNN and MMR)",
            p50,
            lambda a: max(a.values()) <= 25,
        )
    )
    return out


def plot(tasks: dict[str, Any], lat: dict[str, Any], ks: list[int]) -> Path:
    """Accuracy bars, label agreement vs k, latency vs pool size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    names = [
        n
        for n in next(iter(tasks.values()))["configs"]
        if "accuracy" in next(iter(tasks.values()))["configs"][n]
    ]
    for offset, task in enumerate(tasks):
        values = [tasks[task]["configs"][n]["accuracy"] for n in names]
        axes[0].bar([i + offset * 0.27 for i in range(len(names))], values, width=0.27, label=task)
    axes[0].set_xticks([i + 0.27 for i in range(len(names))], names, rotation=40, ha="right")
    axes[0].set_ylabel("accuracy (SmolLM2-135M)")
    axes[0].legend()
    for task in tasks:
        for method, style in (("random", ":"), ("knn", "-"), ("mmr", "--")):
            values = [tasks[task]["configs"][f"{method} k={k}"]["label_agreement"] for k in ks]
            axes[1].plot(ks, values, style, marker="o", label=f"{task} {method}")
    axes[1].set_xlabel("k")
    axes[1].set_ylabel("demo label = gold label")
    axes[1].legend(fontsize=7)
    sizes = sorted(lat, key=int)
    for method in ("knn", "mmr"):
        for stat, style in (("p50_ms", "-"), ("p99_ms", ":")):
            axes[2].plot(
                [int(s) for s in sizes],
                [lat[s][method][stat] for s in sizes],
                style,
                marker="o",
                label=f"{method} {stat}",
            )
    axes[2].set_xscale("log")
    axes[2].set_xlabel("pool size")
    axes[2].set_ylabel("selection ms (query embedding included)")
    axes[2].legend()
    fig.tight_layout()
    path = RESULTS / "demos.png"
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write bench/results/demos.{json,png}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="accuracy on all 300 queries, k = 2, 4, 8")
    parser.add_argument("--acc-queries", type=int, default=100, help="queries per task scored by the model")
    parser.add_argument("--acc-ks", default="4", help="k values whose accuracy is measured (comma-separated)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--relevance-only", action="store_true", help="write demos.relevance.{json,png}")
    args = parser.parse_args(argv)
    from bench.demos_relevance import relevance_benchmark, write_relevance

    if args.relevance_only:
        relevance = relevance_benchmark()
        for row in relevance["goals"]:
            print(f"goal {'MET' if row['met'] else 'NOT MET'}: {row['name']}: {row['achieved']}")
        print(*write_relevance(relevance, environment()))
        return
    ks = [2, 4, 8]
    acc_ks = ks if args.full else [int(k) for k in args.acc_ks.split(",")]
    n_acc = 300 if args.full else args.acc_queries
    started = time.perf_counter()
    scorer = Scorer()
    tasks, prompts, bank_examples, bank_vectors, lat_queries = {}, {}, [], [], []
    for task in TASKS:
        tasks[task], prompts[task], pool, queries = model_free(task, scorer, ks)
        bank_examples += pool.examples
        bank_vectors.append(pool.vectors)
        lat_queries += [q.input for q in queries[:70]]
        print(
            f"{task}: {tasks[task]['pool_size']} examples, embedded in {tasks[task]['pool_embed_s']} s",
            flush=True,
        )
    import numpy as np

    order = np.random.default_rng(SEED).permutation(len(bank_examples))
    vectors = np.concatenate(bank_vectors)[order]
    lat = latency(
        [bank_examples[i] for i in order], vectors, lat_queries, [int(s) for s in args.sizes.split(",")]
    )
    acc_configs = [name for name, _, k in configurations(ks) if k in (0, 32) or k in acc_ks]
    for task in TASKS:
        _, queries = load_task(task)
        for name, value in accuracy(scorer, task, prompts[task], queries, n_acc, acc_configs).items():
            tasks[task]["configs"][name]["accuracy"] = round(value, 4)
    payload: dict[str, Any] = {
        "environment": environment(),
        "setup": {
            "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
            "accuracy_queries_per_task": n_acc,
            "accuracy_ks": acc_ks,
            "model_free_queries_per_task": 300,
            "scoring": "first-token label log-likelihood, one forward pass, bfloat16 weights",
            "placement": "turns",
            "seed": SEED,
            "latency_threads": 1,
            "latency_queries": len(lat_queries),
            "model_tokens_run": scorer.tokens_run,
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "tasks": tasks,
        "latency": lat,
    }
    relevance = relevance_benchmark()
    payload["relevance"] = {k: v for k, v in relevance.items() if k != "goals"}
    payload["goals"] = goals(tasks, lat) + relevance["goals"]
    report(payload, ks)


def report(payload: dict[str, Any], ks: list[int]) -> None:
    """Print the tables, write the JSON and the PNG."""
    tasks, lat = payload["tasks"], payload["latency"]
    headers = ["config"] + [f"{t} {c}" for t in tasks for c in ("acc", "tokens", "agree")]
    rows = []
    for name in next(iter(tasks.values()))["configs"]:
        row: list[Any] = [name]
        for task in tasks:
            entry = tasks[task]["configs"][name]
            row += [entry.get("accuracy", "-"), entry["prompt_tokens"], entry["label_agreement"] or "-"]
        rows.append(row)
    print_table(headers, rows)
    print_table(
        ["pool", "index", "build s", "kNN p50/p99 ms", "MMR p50/p99 ms", "recall@4"],
        [
            [
                r["size"],
                r["index"],
                r["build_s"],
                f"{r['knn']['p50_ms']}/{r['knn']['p99_ms']}",
                f"{r['mmr']['p50_ms']}/{r['mmr']['p99_ms']}",
                r.get("recall_at_4", 1.0),
            ]
            for r in lat.values()
        ],
    )
    for target in payload["goals"]:
        print(f"goal {'MET' if target['met'] else 'NOT MET'}: {target['name']}: {target['achieved']}")
    print(write_results("demos", payload), plot(tasks, lat, ks))


if __name__ == "__main__":
    main()
