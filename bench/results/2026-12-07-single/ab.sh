#!/usr/bin/env bash
# The single-upload A/B of this folder: ROUNDS rounds, each runs nginx (worker_processes 1,
# client_body_buffer_size 1m, bench/baselines/nginx.conf.template) and every given server once, in an order rotated
# by the round; one 512 MiB upload each (tus-bench single; nginx: put), a fresh tus-server per sample (--fsync none),
# `sync` before each. Results: one JSON line per sample in OUT.jsonl, then round_ratios.py.
#   PRIO="chrt -f 20" BENCH_BIN=PATH ab.sh ROUNDS OUT.jsonl NAME=BIN[:FLAGS] ...
# PRIO prefixes the client, nginx and the servers (default "nice -n -20"; "chrt -f 20" runs them SCHED_FIFO so the
# other helpers' builds on this shared 2-core box cannot preempt them: the nearest this box gets to a quiet one).
set -uo pipefail
ROUNDS=$1; OUTJ=$2; shift 2
PRIO=${PRIO:-nice -n -20}
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH="$PRIO ${BENCH_BIN:-/tmp/single/tus-bench}"
D=$(mktemp -d /tmp/single-ab.XXXXXX)
NGX=$D/ngx; mkdir -p $NGX/tmp $NGX/root/upload
sed -e "s#@PREFIX@#$NGX#g" -e "s#@DATA@#$NGX#g" -e "s#@HTTP_PORT@#18190#g" -e "s#@WORKERS@#1#g" -e "s#@BODY_BUF@#1m#g" \
  -e "s#client_body_temp_path .*;#client_body_temp_path $NGX/tmp;#" -e "s#root .*;#root $NGX/root;#" \
  -e "/listen .*ssl;/d" -e "/ssl_certificate/d" "$HERE/../../baselines/nginx.conf.template" > $NGX/nginx.conf
$PRIO nginx -p $NGX -c $NGX/nginx.conf & NPID=$!
sleep 0.5
WHO=(nginx "$@")
for r in $(seq $ROUNDS); do
  n=${#WHO[@]}
  for k in $(seq 0 $((n-1))); do
    w=${WHO[$(( (k + r) % n ))]}
    sync
    if [ "$w" = nginx ]; then
      $BENCH put --url http://127.0.0.1:18190/upload/ --bytes 512MiB --server-pid "$NPID,$(pgrep -P $NPID | paste -sd,)" --label nginx --json-out $OUTJ | grep '^| nginx'
      rm -rf $NGX/root/upload/*
    else
      name=${w%%=*}; rest=${w#*=}; bin=${rest%%:*}; flags=""; [[ $rest == *:* ]] && flags=${rest#*:}
      mkdir -p $D/tus; out=$D/out
      $PRIO $bin --host 127.0.0.1 --port 0 --upload-dir $D/tus --log-level error --fsync none $flags > $out 2>>$D/err &
      SP=$!
      for _ in $(seq 100); do grep -q listening $out && break; sleep 0.1; done
      URL=$(awk '{print $3}' $out)
      $BENCH single --url $URL --bytes 512MiB --server-pid $SP --label $name --json-out $OUTJ | grep "^| $name"
      kill $SP; wait $SP 2>/dev/null; rm -rf $D/tus
    fi
  done
done
kill $NPID; wait $NPID 2>/dev/null
rm -rf $D
python3 "$HERE/round_ratios.py" "$OUTJ" nginx
