#!/usr/bin/env bash
# Start a throwaway redis-server on loopback for tests and CI, daemonized, without persistence.
#
#   scripts/start-redis.sh [PORT] [DIR]      default port 6379, DIR a fresh temporary folder
#   redis-cli -p PORT shutdown nosave         stops it
#
# Prints "redis://127.0.0.1:PORT/0" on success. The cache tests start their own redis-server on a
# free port when the binary exists; this script is for CI steps and manual runs
# (export TOKENLEAN_TEST_REDIS_URL=redis://127.0.0.1:PORT/0 to make the tests use it).
set -euo pipefail
port="${1:-6379}"
dir="${2:-$(mktemp -d /tmp/tokenlean-redis.XXXXXX)}"
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found; install it with: apt-get install -y redis-server" >&2
    exit 1
fi
mkdir -p "$dir"
redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
for _ in $(seq 100); do
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        echo "redis://127.0.0.1:$port/0"
        exit 0
    fi
    sleep 0.1
done
echo "redis-server did not answer on port $port; see $dir/redis.log" >&2
exit 1
