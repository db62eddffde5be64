#!/usr/bin/env bash
# usage: prof.sh NAME SCEN(c256|c1024) MODE(plain|perf|stat|strace) BIN [flags...]
set -u
NAME=$1; SCEN=$2; MODE=$3; BIN=$4; shift 4
BENCH=${BENCH:-/work/main/.build-bench/release/tus-bench}
DISK=/tmp/many/disk; mkdir -p $DISK
case $SCEN in c256) ARGS="--bytes 8MiB -c 256";; c1024) ARGS="--bytes 2MiB -c 1024";; esac
dir=$DISK/$NAME; rm -rf $dir; mkdir -p $dir
out=$(mktemp)
if [ "$NAME" = tusd ]; then $BIN --host 127.0.0.1 --port 0 --upload-dir $dir >$out 2>/tmp/many/$NAME.err &
else $BIN --host 127.0.0.1 --port 0 --upload-dir $dir --log-level error --fsync none "$@" >$out 2>/tmp/many/$NAME.err & fi
PID=$!
for _ in $(seq 100); do grep -q listening $out && break; sleep 0.1; done
URL=$(awk '{print $3}' $out)
# warm-up with deletions
$BENCH concurrent --url $URL --bytes 2MiB -c 1024 --server-pid $PID --label warm >/dev/null; rm -rf $dir/*; sync
case $MODE in
  perf) perf record -F 499 -g -p $PID -o /tmp/many/$NAME-$SCEN.perf 2>/dev/null & PP=$! ;;
  stat) perf stat -e context-switches,cpu-migrations,page-faults,task-clock -p $PID -o /tmp/many/$NAME-$SCEN.stat & PP=$! ;;
  strace) strace -c -f -p $PID -o /tmp/many/$NAME-$SCEN.strace & PP=$!; sleep 1 ;;
  *) PP="" ;;
esac
sync
$BENCH concurrent --url $URL $ARGS --server-pid $PID --label $NAME-$SCEN --json-out /tmp/many/results.jsonl | grep -v '^|---'
[ -n "$PP" ] && { kill -INT $PP; wait $PP; }
echo threads: $(ls /proc/$PID/task | wc -l)
kill $PID; wait $PID 2>/dev/null; rm -rf $dir; rm -f $out
