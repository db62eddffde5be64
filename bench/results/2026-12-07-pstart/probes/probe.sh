#!/usr/bin/env bash
# usage: probe.sh NAME BIN [flags...]: 1024 x 2 MiB after a deleted warm-up, under perf record of libuv uprobes + syscalls
# Probes, set up once (libuv is a shared library; tus-server's symbols are in its symbol table):
#   L=/lib/x86_64-linux-gnu/libuv.so.1; perf probe -x $L 'uv_fs_open path=+0(%dx):string'
#   perf probe -x $L 'uv_fs_write fd=%dx:s32'; perf probe -x $L 'uv_fs_close fd=%dx:s32'
#   for f in uv_queue_work uv_fs_read uv_fs_fstat uv_fs_fdatasync uv_fs_stat uv_fs_unlink uv_fs_rename; do
#     perf probe -x $L $f; done
#   perf probe -x BIN -a 'fs_cb=<mangled TusLoop.fileRequestCallback> fstype=+64(%di):s32 res=+88(%di):s64'
set -u
NAME=$1; BIN=$2; shift 2
BENCH=${BENCH:-/work/main/.build-bench/release/tus-bench}
DISK=/tmp/pstart/disk; mkdir -p $DISK
dir=$DISK/$NAME; rm -rf $dir; mkdir -p $dir
out=$(mktemp)
$BIN --host 127.0.0.1 --port 0 --upload-dir $dir --log-level error --fsync none "$@" >$out 2>/tmp/pstart/$NAME.err &
PID=$!
for _ in $(seq 100); do grep -q listening $out && break; sleep 0.1; done
URL=$(awk '{print $3}' $out)
$BENCH concurrent --url $URL --bytes 2MiB -c 1024 --server-pid $PID --label warm >/dev/null; rm -rf $dir/*; sync
perf record -o /tmp/pstart/$NAME.data -p $PID -e 'probe_libuv:*' -e 'probe_tus:*' -e syscalls:sys_enter_openat -e syscalls:sys_exit_openat \
  -e syscalls:sys_enter_pwritev -e syscalls:sys_exit_pwritev -e syscalls:sys_enter_pwrite64 -e syscalls:sys_exit_pwrite64 \
  -e syscalls:sys_enter_splice -e syscalls:sys_exit_splice -e syscalls:sys_enter_mknodat 2>/tmp/pstart/$NAME.perr & PP=$!
sleep 1
$BENCH concurrent --url $URL --bytes 2MiB -c 1024 --server-pid $PID --label $NAME | grep -v '^|---'
kill -INT $PP; wait $PP
kill $PID; wait $PID 2>/dev/null; rm -rf $dir; rm -f $out
perf script -i /tmp/pstart/$NAME.data -F tid,time,event,trace > /tmp/pstart/$NAME.txt 2>/dev/null
wc -l /tmp/pstart/$NAME.txt
