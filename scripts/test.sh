#!/usr/bin/env bash
# The whole test suite: Swift unit and loopback tests, then the interop tests that drive the real
# tus-server binary with real clients (tuspy, aiotus, curl). This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bash scripts/python-env.sh

swift build --build-tests
swift test --skip-build --parallel --num-workers 2
swift build -c release
TUS_SERVER_BIN="$PWD/.build/release/tus-server" TUS_CLI_BIN="$PWD/.build/release/tus-cli" \
    .venv/bin/python -m pytest -q Tests/interop
