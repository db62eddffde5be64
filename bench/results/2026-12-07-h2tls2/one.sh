#!/bin/bash
# usage: one.sh BIN [perf record args...] -> "ticks seconds": one 512 MiB h2+TLS upload, server data on /dev/shm
BIN=$1; shift
W=/tmp/h2tls2; DATA=$(mktemp -d /dev/shm/h2tls2.XXXX)
$PIN "$BIN" --host 127.0.0.1 --port 0 --upload-dir "$DATA" --log-level error --fsync none $SERVER_ARGS \
  --tls-certificate $W/cert.pem --tls-key $W/key.pem > $DATA.out 2>/dev/null &
PID=$!
for _ in $(seq 400); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
if [ $# -gt 0 ]; then perf record "$@" -p $PID 2>/dev/null >/dev/null & PP=$!; sleep 0.5; fi
t0=$(awk '{print $14+$15}' /proc/$PID/stat); s=$(date +%s.%N)
h2load -n 1 -c 1 -m 1 -t 1 -d $W/single.bin -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 536870912' \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
e=$(date +%s.%N); t1=$(awk '{print $14+$15}' /proc/$PID/stat)
[ $# -gt 0 ] && { kill -INT $PP; wait $PP; }
echo "tus $((t1-t0)) $(echo "$e - $s" | bc) ok=$(grep -c '1 2xx' $DATA.client)"
kill $PID; wait $PID 2>/dev/null; rm -rf $DATA $DATA.out $DATA.client
