#!/usr/bin/env bash
# One TLS upload row against one server, for profiling (what bench/run-tls does per row, plus perf):
#   prof.sh SERVER-BIN MODE [OUT]     MODE: single | c32 | ngx-single | ngx-c32 (nginx 1 worker, 1m body buffer)
# Prints MB/s and server CPU s/GiB (utime, stime from /proc/PID/stat, all threads). OUT "stat-NAME": perf stat of
# context switches, write/pwrite(v)/futex/read syscalls and page faults into $WORK/stat-NAME.txt; any other OUT:
# perf record into that file (PERFOPT, default -g; e.g. PERFOPT="--call-graph dwarf,16384"). ours gets a warm-up
# (8 x 1 MiB) before counting, so that the threadpool threads exist when perf attaches.
set -u
BIN=$1; MODE=$2; PERF=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/tus-tls-prof}
W=$WORK/w; mkdir -p $W
[ -f $W/cert.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout $W/key.pem -out $W/cert.pem >/dev/null 2>&1
BENCH=${BENCH_BIN:-$HERE/../../../.build/release/tus-bench}
rm -rf $W/data; mkdir -p $W/data
case $MODE in ngx*) 
  NGX=$W/ngx; mkdir -p $NGX $W/data/nginx-tmp $W/data/nginx-root/upload
  sed -e "s#@PREFIX@#$NGX#g" -e "s#@DATA@#$W/data#g" -e "s#@HTTP_PORT@#${NGX_HTTP_PORT:-18391}#g" -e "s#@TLS_PORT@#${NGX_TLS_PORT:-18754}#g" \
    -e "s#@WORKERS@#1#g" -e "s#@BODY_BUF@#1m#g" $HERE/../../baselines/nginx.conf.template > $NGX/nginx.conf
  cp $W/cert.pem $W/key.pem $NGX/
  nginx -p $NGX -c $NGX/nginx.conf & MPID=$!
  sleep 0.5; PID=$(pgrep -P $MPID | head -1); URL=https://127.0.0.1:${NGX_TLS_PORT:-18754}/upload/ ;;
*)
  $BIN --host 127.0.0.1 --port 0 --upload-dir $W/data --log-level error --fsync none \
    --tls-certificate $W/cert.pem --tls-key $W/key.pem > $W/tus.out 2>$W/tus.err & MPID=$!; PID=$MPID
  for _ in $(seq 200); do grep -q listening $W/tus.out && break; sleep 0.05; done
  URL=$(awk '{print $3}' $W/tus.out) ;;
esac
case $MODE in
  single) CMD="$BENCH single --url $URL --bytes 512MiB --insecure --timeout 600"; TOT=512 ;;
  c32) CMD="$BENCH concurrent --url $URL --bytes 32MiB -c 32 --insecure --timeout 600"; TOT=1024 ;;
  ngx-single) CMD="$BENCH put --url $URL --bytes 512MiB --insecure --timeout 600"; TOT=512 ;;
  ngx-c32) CMD="$BENCH put --url $URL --bytes 32MiB -c 32 --insecure --timeout 600"; TOT=1024 ;;
esac
[ "${MODE#ngx}" = "$MODE" ] && $BENCH concurrent --url $URL --bytes 1MiB -c 8 --insecure --timeout 60 >/dev/null 2>&1
sync
read u0 s0 < <(awk '{print $14, $15}' /proc/$PID/stat)
if [ -n "$PERF" ] && [ "${PERF#stat}" != "$PERF" ]; then perf stat -e context-switches,syscalls:sys_enter_pwritev,syscalls:sys_enter_pwrite64,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,page-faults -p $PID -o $WORK/$PERF.txt & PP=$!; sleep 0.3; elif [ -n "$PERF" ]; then perf record -F 2000 ${PERFOPT:--g} -o $PERF -p $PID 2>/dev/null & PP=$!; sleep 0.3; fi
OUT=$($CMD 2>&1)
if [ -n "$PERF" ]; then kill -INT $PP; wait $PP 2>/dev/null; fi
read u1 s1 < <(awk '{print $14, $15}' /proc/$PID/stat)
kill $MPID; wait $MPID 2>/dev/null
J=$(echo "$OUT" | grep '^{' | tail -1)
python3 - "$MODE" "$TOT" "$u0" "$s0" "$u1" "$s1" "$J" <<'PY'
import json,sys
m,tot,u0,s0,u1,s1,j=sys.argv[1:]
tot=int(tot); gib=tot/1024
u=(int(u1)-int(u0))/100; s=(int(s1)-int(s0))/100
try: d=json.loads(j); mbps=tot*2**20/d["wall_seconds"]/1e6; err=d.get("errors",0)
except Exception: mbps=0; err="?"
print(f"{m}: {mbps:.0f} MB/s  cpu {(u+s)/gib:.3f} s/GiB (user {u/gib:.3f} sys {s/gib:.3f}) errors {err}")
PY
rm -rf $W/data
