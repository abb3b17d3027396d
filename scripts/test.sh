#!/usr/bin/env bash
# Set up everything and run the test suite: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for extra in scripts/setup-redis.sh scripts/setup-chromium.sh scripts/setup-vllm.sh; do
  # optional parts of the environment, each installed once per machine and reused
  if [ -f "$extra" ]; then bash "$extra"; fi
done
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
