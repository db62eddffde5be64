#!/bin/bash
# usage: post2-prof.sh BIN OUTNAME [seconds]
BIN=$1; NAME=$2; SECS=${3:-6}
D=/tmp/post2-shm/$NAME; rm -rf $D; mkdir -p $D
$BIN --host 127.0.0.1 --port 0 --upload-dir $D --log-level error --fsync none > /tmp/post2-$NAME.out 2>&1 &
PID=$!
for i in $(seq 50); do grep -q listening /tmp/post2-$NAME.out && break; sleep 0.1; done
URL=$(awk '{print $3}' /tmp/post2-$NAME.out)
/tmp/post2-bins/tus-bench create --url $URL -c 32 --duration $((SECS+3)) --server-pid $PID > /tmp/post2-$NAME.bench &
BP=$!
sleep 1
perf stat -e task-clock,context-switches,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_openat,syscalls:sys_enter_mknodat,syscalls:sys_enter_pwrite64,syscalls:sys_enter_close,syscalls:sys_enter_setsockopt,syscalls:sys_enter_getrandom -p $PID -o /tmp/post2-$NAME.stat -- sleep 2
perf stat -e probe_libc:malloc,probe_libc:free,syscalls:sys_enter_mknodat -p $PID -o /tmp/post2-$NAME.malloc -- sleep 1
perf record -F 1999 -g -p $PID -o /tmp/post2-$NAME.perf -- sleep $((SECS-3)) 2>/dev/null
wait $BP
kill $PID; wait $PID
cat /tmp/post2-$NAME.bench
