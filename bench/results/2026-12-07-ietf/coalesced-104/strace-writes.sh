#!/usr/bin/env bash
# strace the server's write calls during a short draft creation run: writes per request
set -euo pipefail
SERVER=$1; OUT=$2
DATA=$(mktemp -d /tmp/ietf2-strace.XXXXXX)
LOG=$(mktemp)
"$SERVER" --host 127.0.0.1 --port 0 --upload-dir "$DATA" --loops 1 --fsync none --log-level error > "$LOG" 2>/dev/null &
PID=$!
for _ in $(seq 100); do grep -q listening "$LOG" && break; sleep 0.1; done
URL=$(awk '{print $3}' "$LOG")
timeout 20 strace -f -c -e trace=write,writev,sendmsg,sendto -p $PID -o "$OUT.strace" &
ST=$!
sleep 1
/tmp/ietf2-bench create --url "$URL" -c 4 --duration 2 --protocol ietf --interop 9 > "$OUT.bench" 2>&1
kill -INT $ST; wait $ST || true
kill $PID; wait $PID 2>/dev/null || true
rm -rf "$DATA" "$LOG"
