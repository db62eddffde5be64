#!/usr/bin/env bash
# thr2.sh BIN "FLAGS" N: N uploads of 512 MiB, each on a fresh server; prints MB/s, server CPU ticks, vol/invol switches
BIN=$1; FLAGS=$2; N=$3
for i in $(seq $N); do
D=$(mktemp -d /tmp/single-thr.XXXXXX); out=$D/out; mkdir -p $D/tus
chrt -f 20 $BIN --host 127.0.0.1 --port 0 --upload-dir $D/tus --log-level error --fsync none $FLAGS > $out 2>>$D/err & SP=$!
for _ in $(seq 100); do grep -q listening $out && break; sleep 0.1; done
URL=$(awk '{print $3}' $out); sync
mb=$(chrt -f 20 /tmp/single/tus-bench single --url $URL --bytes 512MiB --label x | grep '^| x' | awk -F'|' '{print $4}')
python3 - $SP "$mb" <<'PY'
import sys,os,glob
pid=sys.argv[1]; cpu=0; v=0; iv=0; loop=0
for t in glob.glob(f'/proc/{pid}/task/*'):
    s=open(t+'/stat').read().split(')')[1].split()
    c=int(s[11])+int(s[12]); cpu+=c
    comm=open(t+'/comm').read().strip()
    st=dict(l.split(':\t') for l in open(t+'/status').read().splitlines() if ':\t' in l)
    v+=int(st['voluntary_ctxt_switches']); iv+=int(st['nonvoluntary_ctxt_switches'])
print(f"MBps {sys.argv[2].strip():>8}  cpu_ticks {cpu:4d}  vol {v:5d} invol {iv:5d}")
PY
kill -INT $SP; wait $SP 2>/dev/null; rm -rf $D
done
