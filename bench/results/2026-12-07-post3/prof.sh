#!/bin/bash
# usage: prof.sh BIN NAME [seconds]
BIN=$1; NAME=$2; SECS=${3:-6}
D=${PARENT:-/dev/shm/post3}/$NAME; rm -rf $D; mkdir -p $D
$BIN --host 127.0.0.1 --port 0 --upload-dir $D --log-level error --fsync none > /tmp/post3/$NAME.out 2>&1 &
PID=$!
for i in $(seq 50); do grep -q listening /tmp/post3/$NAME.out && break; sleep 0.1; done
URL=$(awk '{print $3}' /tmp/post3/$NAME.out)
/tmp/post3/bins/tus-bench create --url $URL -c 32 --duration $((SECS+3)) --server-pid $PID > /tmp/post3/$NAME.bench &
BP=$!
sleep 1
perf stat -e task-clock,context-switches,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_openat,syscalls:sys_enter_mknodat,syscalls:sys_enter_pwrite64,syscalls:sys_enter_close,syscalls:sys_enter_getrandom,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom -p $PID -o /tmp/post3/$NAME.stat -- sleep 2
perf stat -e probe_libuv:uv_queue_work,probe_libuv:uv_async_send,syscalls:sys_enter_mknodat,context-switches -p $PID -o /tmp/post3/$NAME.probe -- sleep 1
perf record -F 1999 -g -p $PID -o /tmp/post3/$NAME.perf -- sleep $((SECS-3)) 2>/dev/null
wait $BP
kill $PID; wait $PID
rm -rf $D
cat /tmp/post3/$NAME.bench
