#!/usr/bin/env bash
# Install Debian's chromium once per machine, for the /dashboard test (tests/ledger/test_dashboard_browser.py
# loads the page in headless chromium, reads its numbers from the rendered DOM and takes a
# screenshot). Under CI=true a missing chromium fails that test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "chromium is missing and apt-get is not available: install chromium by hand" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
