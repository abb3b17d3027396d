#!/usr/bin/env bash
# Install redis-server (Debian's package, Redis 7) once per machine, for the cache tests and the
# Redis cache store. The tests start their own redis-server on a free loopback port; under CI=true
# a missing redis-server fails them instead of skipping. Nothing is started here.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "redis-server is missing and apt-get is not available: install Redis 7 by hand" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
# the Python client (also a dependency in pyproject.toml once the lead adds it)
if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import redis" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "redis>=5"
fi
redis-server --version
