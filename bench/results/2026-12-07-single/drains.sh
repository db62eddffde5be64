#!/usr/bin/env bash
# drains.sh BIN "FLAGS": splice call sizes per thread for one 512 MiB upload (perf tracepoints, little overhead)
BIN=$1; FLAGS=$2
D=$(mktemp -d); mkdir $D/tus
nice -n -20 $BIN --host 127.0.0.1 --port 0 --upload-dir $D/tus --log-level error --fsync none $FLAGS > $D/out 2>&1 & SP=$!
for _ in $(seq 100); do grep -q listening $D/out && break; sleep 0.1; done
URL=$(awk '{print $3}' $D/out)
/tmp/single/tus-bench single --url $URL --bytes 8MiB --label w >/dev/null
perf record -e syscalls:sys_exit_splice -e syscalls:sys_enter_splice -p $SP -o $D/p.data 2>/dev/null & PP=$!
sleep 0.5; sync
nice -n -20 /tmp/single/tus-bench single --url $URL --bytes 512MiB --label x | grep "^| x"
kill -INT $PP; wait $PP
perf script -i $D/p.data -F tid,event,trace 2>/dev/null > $D/s.txt
python3 - $D/s.txt <<'PY'
import sys,re,collections
last={}; per=collections.defaultdict(list); loop=None
for l in open(sys.argv[1]):
    p=l.split()
    tid=p[0]
    if 'sys_enter_splice' in l:
        m=re.search(r'flags: 0x([0-9a-f]+)',l); last[tid]=int(m.group(1),16) if m else 0
    elif 'sys_exit_splice' in l:
        ret=int(re.search(r'0x([0-9a-f]+)$',l.strip()).group(1),16) if '0x' in l else 0
        if ret>=1<<63: ret-=1<<64
        kind='in' if last.get(tid,0)&2 else 'out'
        per[(kind)].append(ret)
for k,v in per.items():
    pos=sorted(x for x in v if x>0); neg=[x for x in v if x<=0]
    print(k,'calls',len(v),'ok',len(pos),'eagain/other',len(neg),'median',pos[len(pos)//2] if pos else 0,'mean',sum(pos)//max(1,len(pos)),'p10',pos[len(pos)//10] if pos else 0,'total',sum(pos))
PY
kill -INT $SP; wait $SP 2>/dev/null; rm -rf $D
