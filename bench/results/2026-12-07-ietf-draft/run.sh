#!/bin/bash
# Side by side, one server, alternating: a 512 MiB upload in one request as tus 1.0.0 (creation-with-upload POST)
# and as draft-ietf-httpbis-resumable-upload interop 9 (POST with Upload-Complete: ?1, its 104 first), both by curl
# over loopback; then 200 empty creations of each, for the server CPU a creation costs. Server CPU from
# /proc/<pid>/stat (utime+stime) around each run. Usage: run.sh <tus-server binary> [rounds]
set -euo pipefail
BIN=$1; ROUNDS=${2:-3}; CREATIONS=${CREATIONS:-200}; UPLOADS=${UPLOADS:-1}
WORK=$(mktemp -d); trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
head -c $((512 << 20)) /dev/urandom > "$WORK/payload"
"$BIN" --host 127.0.0.1 --port 0 --upload-dir "$WORK/up" --loops 1 > "$WORK/out" 2> "$WORK/log" &
PID=$!
for _ in $(seq 50); do grep -q "^listening on" "$WORK/out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -E 's#^listening on https?://[^:/]+:([0-9]+)/.*#\1#' "$WORK/out")
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
tick=$(getconf CLK_TCK)
upload() {
  case $1 in
    tus) curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST -H 'Tus-Resumable: 1.0.0' \
           -H "Upload-Length: $((512 << 20))" -H 'Content-Type: application/offset+octet-stream' \
           --data-binary @"$WORK/payload" "http://127.0.0.1:$PORT/files/" ;;
    ietf) curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST -H 'Upload-Draft-Interop-Version: 9' \
           -H 'Upload-Complete: ?1' --data-binary @"$WORK/payload" "http://127.0.0.1:$PORT/files/" ;;
  esac
}
create() {
  case $1 in
    tus) curl -s -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 10' "http://127.0.0.1:$PORT/files/" ;;
    ietf) curl -s -o /dev/null -X POST -H 'Upload-Draft-Interop-Version: 9' -H 'Upload-Complete: ?0' \
            -H 'Content-Length: 0' "http://127.0.0.1:$PORT/files/" ;;
  esac
}
for round in $(seq "$ROUNDS"); do
  for protocol in tus ietf; do
    [ "$UPLOADS" = 1 ] || continue
    before=$(cpu); result=$(upload $protocol); after=$(cpu)
    echo "upload512 round=$round protocol=$protocol status+seconds=$result server_cpu_s=$(echo "($after-$before)/$tick" | bc -l)"
    rm -rf "$WORK/up"/* 2>/dev/null || true
  done
  for protocol in tus ietf; do
    before=$(cpu); for _ in $(seq "$CREATIONS"); do create $protocol; done; after=$(cpu)
    echo "create$CREATIONS round=$round protocol=$protocol server_cpu_s=$(echo "($after-$before)/$tick" | bc -l)"
  done
done
