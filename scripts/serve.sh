#!/usr/bin/env bash
# Quick start: install what building and serving need (nothing the tests use), build in release mode, run
# tus-server on embedded defaults (port 8080, uploads under ./data). Extra arguments go to tus-server, e.g.
# --port 0 --loops 1.
set -euo pipefail
cd "$(dirname "$0")/.."
TUS_PACKAGES=serve source scripts/bootstrap.sh
# Build output goes to stderr: stdout carries only the server's start-up line, which scripts wait for.
build_release >&2   # tus-server, tus-cli and tus-bench (scripts/bootstrap.sh)
exec .build/release/tus-server "$@"
