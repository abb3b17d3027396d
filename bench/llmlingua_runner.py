"""The llmlingua library as a subprocess peer for bench/compression.py (runs in .venv-llmlingua).

Started by ``bench.compression`` with .venv-llmlingua's python (llmlingua 0.2.2 needs a
transformers 4.x; tokenlean's venv has 5.x). Protocol: one JSON object per line on stdin, one JSON
answer per line on stdout; the first line out is ``{"ready": ...}`` once the model is loaded.

A job is ``{"context": [...], "question": str, "instruction": str, "ratio": float,
"settings": "longllmlingua" | "llmlingua"}``: the context (not the question) is to shrink
``ratio`` times, so ``target_token`` is the context's token count in the model's tokenizer (the
unit the library budgets in) divided by ``ratio``; the answer is ``{"prompt": str, "seconds": float,
"origin_tokens": int, "compressed_tokens": int}`` (the library's own counts, in GPT-3.5 tokens).

This file never imports tokenlean: it only needs the standard library, torch and llmlingua.
"""

from __future__ import annotations

import json
import os
import sys
import time

LONGLLMLINGUA = {  # the settings the LongLLMLingua README gives for question-aware compression
    "condition_in_question": "after_condition",
    "reorder_context": "sort",
    "dynamic_context_compression_ratio": 0.3,
    "condition_compare": True,
    "context_budget": "+100",
    "rank_method": "longllmlingua",
    "concate_question": False,
}
LLMLINGUA = {"context_budget": "*1.5", "iterative_size": 100}  # the settings of its GSM8K (CoT) example


def transformers4_folder(folder: str, shim_root: str) -> str:
    """A view of a transformers-5 model folder that transformers 4.x reads the same way.

    The folder tokenlean writes names its tokenizer class ``TokenizersBackend`` (5.x only) and
    keeps RoPE settings under ``rope_parameters``; 4.x would fail on the first and silently use
    its default ``rope_theta`` (10,000 instead of SmolLM2's 100,000) on the second. The shim
    links the weights and tokenizer and rewrites the two JSON files; nothing else changes.
    """
    source = os.path.abspath(folder)
    target = os.path.join(shim_root, os.path.basename(source.rstrip("/")))
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        path = os.path.join(target, name)
        if name in ("config.json", "tokenizer_config.json"):
            with open(os.path.join(source, name)) as handle:
                data = json.load(handle)
            if name == "config.json":
                data.update(
                    {k: v for k, v in (data.get("rope_parameters") or {}).items() if k == "rope_theta"}
                )
                data.setdefault("torch_dtype", data.get("dtype", "float32"))
            else:
                data["tokenizer_class"] = "PreTrainedTokenizerFast"
            with open(path, "w") as handle:
                json.dump(data, handle, indent=1)
        elif not os.path.exists(path):
            os.symlink(os.path.join(source, name), path)
    return target


def main() -> None:
    """Load the model once, then answer jobs until stdin closes."""
    import torch
    from llmlingua import PromptCompressor

    threads = int(os.environ.get("BENCH_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    shim_root = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "models")
    compressor = PromptCompressor(model_name=transformers4_folder(sys.argv[1], shim_root), device_map="cpu")
    print(
        json.dumps(
            {
                "ready": True,
                "load_seconds": time.perf_counter() - started,
                "dtype": str(compressor.model.dtype),
                "threads": torch.get_num_threads(),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        settings = dict(
            LONGLLMLINGUA if job.get("settings", "longllmlingua") == "longllmlingua" else LLMLINGUA
        )
        started = time.perf_counter()
        # the library budgets in its model's tokenizer (get_token_length), so the target is set there
        context_tokens = compressor.get_token_length("\n\n".join(job["context"]), add_special_tokens=False)
        out = compressor.compress_prompt(
            job["context"],
            instruction=job.get("instruction", ""),
            question=job.get("question", ""),
            target_token=max(1, round(context_tokens / job["ratio"])),
            **settings,
        )
        seconds = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "prompt": out["compressed_prompt"],
                    "seconds": seconds,
                    "origin_tokens": out["origin_tokens"],
                    "compressed_tokens": out["compressed_tokens"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
