#!/bin/bash
# usage: one.sh BIN h1|h2 [perf-stat|perf-record ARGS...] -> "label ticks(u+s) utime stime seconds ok"
# one 512 MiB TLS upload, server data on /dev/shm
BIN=$1; MODE=$2; shift 2
W=/tmp/h2s; DATA=$(mktemp -d ${DATAROOT:-/dev/shm}/h2s.XXXX)
$PIN $WRAP "$BIN" --host 127.0.0.1 --port 0 --upload-dir "$DATA" --log-level error --fsync none $SERVER_ARGS \
  --tls-certificate $W/cert.pem --tls-key $W/key.pem > $DATA.out 2>/dev/null &
PID=$!
if [ -n "$WRAP" ]; then WPID=$PID; for _ in $(seq 100); do PID=$(pgrep -P $WPID | head -1); [ -n "$PID" ] && break; sleep 0.05; done; fi
for _ in $(seq 400); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
PP=
if [ -n "$WARM" ]; then h2load -n 1 -c 1 -d $W/small.bin -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 1048576' -H 'Content-Type: application/offset+octet-stream' $URL >/dev/null 2>&1; /work/h2s-bins/tus-bench single --url $URL --bytes 1MiB --insecure >/dev/null 2>&1; fi
if [ "$1" = stat ]; then shift; perf stat "$@" -p $PID -o $DATA.stat & PP=$!; sleep 0.3;
elif [ "$1" = record ]; then shift; TGT="-p $PID"; [ -n "$LOOPONLY" ] && TGT="-t $(ls /proc/$PID/task | sed -n 3p)"; [ -n "$LOOPONLY" ] && cat /proc/$PID/task/*/comm | tr '\n' ' '; perf record "$@" $TGT 2>/dev/null >/dev/null & PP=$!; sleep 0.5; fi
read u0 s0 < <(awk '{print $14, $15}' /proc/$PID/stat); s=$(date +%s.%N)
if [ $MODE = h2c32 ]; then
h2load -n 32 -c 32 -m 1 -t 1 -d $W/conc.bin -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 33554432' \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
ok=$(grep -c '32 2xx' $DATA.client)
elif [ $MODE = h2 ]; then
h2load -n 1 -c 1 -m 1 -t 1 -d $W/single.bin -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 536870912' \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
ok=$(grep -c '1 2xx' $DATA.client)
else
/work/h2s-bins/tus-bench single --url $URL --bytes 512MiB --insecure --timeout 600 > $DATA.client 2>&1
ok=$(grep -c '"errors":0' $DATA.client)
fi
e=$(date +%s.%N); read u1 s1 < <(awk '{print $14, $15}' /proc/$PID/stat)
[ -n "$PP" ] && { kill -INT $PP; wait $PP; }
echo "$(basename $BIN) $MODE $((u1-u0+s1-s0)) u=$((u1-u0)) s=$((s1-s0)) $(echo "$e - $s" | bc) ok=$ok load=$(cut -d' ' -f1 /proc/loadavg)"
[ -f $DATA.stat ] && cp $DATA.stat $W/last.stat
kill $PID; wait ${WPID:-$PID} 2>/dev/null; rm -rf $DATA $DATA.out $DATA.client $DATA.stat
