#!/bin/bash
BIN=$1; MODE=$2
W=/tmp/h2tls2; DATA=$(mktemp -d /dev/shm/h2tls2.XXXX)
"$BIN" --host 127.0.0.1 --port 0 --upload-dir "$DATA" --log-level error --fsync none \
  --tls-certificate $W/cert.pem --tls-key $W/key.pem > $DATA.out 2>/dev/null &
PID=$!
for _ in $(seq 400); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
perf stat -e syscalls:sys_enter_pwrite64,syscalls:sys_enter_write,syscalls:sys_enter_futex,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,context-switches,task-clock -p $PID -o $DATA.stat &
PP=$!; sleep 0.3
if [ "$MODE" = h2 ]; then
  h2load -n 1 -c 1 -m 1 -t 1 -d $W/single.bin -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 536870912' \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
else
  /work/main/.build-bench/release/tus-bench single --url $URL --bytes 512MiB --insecure --timeout 600 > $DATA.client 2>&1
fi
kill -INT $PP; wait $PP
grep -E "syscalls|context|task-clock" $DATA.stat | awk '{printf "%s %s | ", $1, $2}'; echo
kill $PID; wait $PID 2>/dev/null; rm -rf $DATA $DATA.out $DATA.client $DATA.stat
