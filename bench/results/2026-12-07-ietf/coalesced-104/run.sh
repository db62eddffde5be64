#!/usr/bin/env bash
# Before/after the HTTP/1.1 104 coalescing, alternating in one run: each pass runs bench/run-ietf --only create
# (tus POST vs draft POST with its 104, 32 connections, 3 s, server CPU per request) on one server build.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
OUT=bench/results/2026-12-07-ietf/coalesced-104
BEFORE=${BEFORE:-/tmp/ietfclient-server-1127}
AFTER=${AFTER:-/tmp/ietf2-server-after}
BENCH=${BENCH:-/tmp/ietf2-bench}
for pass in 1 2 3 4; do
  order=(before after); [ $((pass % 2)) = 0 ] && order=(after before)
  for build in "${order[@]}"; do
    server=$BEFORE; [ "$build" = after ] && server=$AFTER
    echo "pass $pass $build $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"
    BENCH_OUT=$OUT/$build-$pass bench/run-ietf --server "$server" --bench "$BENCH" --rounds 2 --only create --tmpfs \
      > /dev/null
  done
done
echo "end $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"
