#!/usr/bin/env bash
# Kernel/user symbols of tus-server during one 1024 x 2 MiB load on ext4 without a journal (/tmp), after a deleted
# warm-up load, per binary: perf-ab.sh OUTDIR NAME=BIN...
set -euo pipefail
OUT=$1; shift
BENCH=/work/main/.build-bench/release/tus-bench
for who in "$@"; do
  name=${who%%=*}; bin=${who#*=}
  dir=$(mktemp -d /tmp/lazy2-perf.XXXXXX); log=$(mktemp)
  "$bin" --host 127.0.0.1 --port 0 --upload-dir "$dir" --log-level error --fsync none > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
  url=$(awk '{print $3}' "$log")
  "$BENCH" concurrent --url "$url" --bytes 2MiB -c 1024 --label warm > /dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  find "$dir" -mindepth 1 -delete
  "$bin" --host 127.0.0.1 --port 0 --upload-dir "$dir" --log-level error --fsync none > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
  url=$(awk '{print $3}' "$log")
  perf record -q -F 999 -g -p "$pid" -o "$OUT/$name.data" -- sleep 6 > /dev/null 2>&1 &
  perfpid=$!
  sleep 0.3
  "$BENCH" concurrent --url "$url" --bytes 2MiB -c 1024 --server-pid "$pid" --label "$name" > "$OUT/$name.bench.txt"
  wait "$perfpid" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  perf report -i "$OUT/$name.data" --no-children --sort sym -g none --stdio 2>/dev/null | grep -v '^#' | grep '%' \
    | head -40 > "$OUT/$name.top.txt" || true
  rm -rf "$dir" "$log"
done
