#!/bin/bash
# usage: one.sh BIN MODE(h2|h1) [perfcmd...]  -> prints "MODE ticks seconds"
BIN=$1; MODE=$2; shift 2
D=/tmp/h2cpu; DATA=$(mktemp -d /dev/shm/h2cpu.XXXX)
"$BIN" --host 127.0.0.1 --port 0 --upload-dir "$DATA" --log-level error --fsync none \
  --tls-certificate $D/cert.pem --tls-key $D/key.pem > $DATA.out 2>/dev/null &
PID=$!
for _ in $(seq 400); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
t0=$(awk '{print $14+$15}' /proc/$PID/stat); s=$(date +%s.%N)
if [ "$MODE" = h2 ]; then
  h2load -n 1 -c 1 -m 1 -t 1 -d $D/single.bin -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 536870912' \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
else
  /work/main/.build-bench/release/tus-bench single --url $URL --bytes 512MiB --insecure --timeout 600 > $DATA.client 2>&1
fi
e=$(date +%s.%N); t1=$(awk '{print $14+$15}' /proc/$PID/stat)
ok=$(grep -c '2xx\|wall_seconds' $DATA.client)
echo "$MODE $((t1-t0)) $(echo "$e - $s" | bc) ok=$ok"
kill $PID; wait $PID 2>/dev/null; rm -rf $DATA $DATA.out $DATA.client
