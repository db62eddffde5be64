#!/bin/bash
# Side by side: main's release tus-server vs the service branch's, same client, alternating.
set -u
BENCH=/work/main/.build/release/tus-bench
declare -A BIN=([main]=/work/main/.build/release/tus-server [service]=/work/wt-service/.build/release/tus-server)
declare -A PORT=([main]=18431 [service]=18432)
PIDS=()
for k in main service; do
  rm -rf /tmp/svcbench/$k; mkdir -p /tmp/svcbench/$k
  ${BIN[$k]} --host 127.0.0.1 --port ${PORT[$k]} --upload-dir /tmp/svcbench/$k --loops 1 > /tmp/svcbench/$k.log 2>&1 &
  PIDS+=($!)
done
sleep 1
for round in 1 2; do
  for k in main service; do
    for sc in create head; do
      out=$($BENCH $sc --url http://127.0.0.1:${PORT[$k]}/files/ --concurrency 8 --duration 4 --bytes 1 2>&1 | grep -E '^\|' | tail -1)
      echo "round=$round server=$k scenario=$sc $out"
    done
  done
done
for p in "${PIDS[@]}"; do kill $p; done
