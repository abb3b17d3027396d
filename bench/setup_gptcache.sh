#!/usr/bin/env bash
# Create .venv-gptcache (git-ignored) with GPTCache, the peer that bench/cache.py compares against.
# GPTCache installs missing backends with pip at run time; sqlalchemy and faiss-cpu are installed
# here so the benchmark run never downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-gptcache/bin/python ] || "$PY" -m venv .venv-gptcache
.venv-gptcache/bin/python -m pip install --quiet --upgrade pip
.venv-gptcache/bin/python -m pip install --quiet "gptcache==0.1.44" "faiss-cpu" "sqlalchemy" "numpy<2.3"
.venv-gptcache/bin/python -c "import gptcache, faiss, sqlalchemy; print('gptcache', gptcache.__version__)"
