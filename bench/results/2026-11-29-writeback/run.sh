#!/usr/bin/env bash
# usage: run.sh OUTDIR ROUNDS SCENARIO CONFIG...   CONFIG = label:binary:fsync:kib:wait
set -uo pipefail
OUT=$1; ROUNDS=$2; SCEN=$3; shift 3
BENCH=/work/wt-writeback/.build-bench/release/tus-bench
mkdir -p "$OUT"
for round in $(seq "$ROUNDS"); do
  cfgs=("$@"); n=${#cfgs[@]}
  for i in $(seq 0 $((n-1))); do
    cfg=${cfgs[$(( (i + round) % n ))]}
    IFS=: read -r label bin fsync kib wait <<<"$cfg"
    DATA=$(mktemp -d /work/wt-writeback/.bench-wb/data.XXXXXX)
    log=$(mktemp)
    TUS_WRITEBACK_KIB=$kib TUS_WRITEBACK_WAIT=$wait "$bin" --host 127.0.0.1 --port 0 --upload-dir "$DATA" \
      --log-level error --fsync "$fsync" > "$log" 2>>"$OUT/server-stderr.log" &
    pid=$!
    for _ in $(seq 50); do grep -q listening "$log" && break; sleep 0.1; done
    url=$(awk '{print $3}' "$log")
    if [ "$SCEN" = single ]; then
      "$BENCH" single --url "$url" --bytes 512MiB --server-pid $pid --repeat 5 --label "$label" --json-out "$OUT/results.jsonl" >/dev/null
    else
      "$BENCH" concurrent --url "$url" --bytes 32MiB -c 32 --server-pid $pid --repeat 3 --label "$label" --json-out "$OUT/results.jsonl" >/dev/null
    fi
    kill $pid; wait $pid 2>/dev/null
    rm -rf "$DATA" "$log"; sync
    echo "round $round $label done" >&2
  done
done
