#!/usr/bin/env bash
# C=N SIZE=S c32.sh ROUNDS OUT.jsonl NAME=BIN ...: C x SIZE (default 32 x 32 MiB) concurrent uploads, alternating, SCHED_FIFO like ab.sh
ROUNDS=$1; OUTJ=$2; shift 2; WHO=("$@")
for r in $(seq $ROUNDS); do
  n=${#WHO[@]}
  for k in $(seq 0 $((n-1))); do
    w=${WHO[$(( (k + r) % n ))]}; name=${w%%=*}; bin=${w#*=}
    D=$(mktemp -d /tmp/single-c32.XXXXXX); mkdir $D/tus
    chrt -f 20 $bin --host 127.0.0.1 --port 0 --upload-dir $D/tus --log-level error --fsync none > $D/out 2>&1 & SP=$!
    for _ in $(seq 100); do grep -q listening $D/out && break; sleep 0.1; done
    URL=$(awk '{print $3}' $D/out); sync
    chrt -f 20 /tmp/single/tus-bench concurrent -c ${C:-32} --url $URL --bytes ${SIZE:-32MiB} --server-pid $SP --label $name-c${C:-32} --json-out $OUTJ | grep "^| $name"
    kill $SP; wait $SP 2>/dev/null; rm -rf $D
  done
done
