#!/bin/bash
# prof.sh BIN NAME [h1|h2]: one 512 MiB upload over TLS under perf record -g; prints server CPU s/GiB and MB/s
set -e
BIN=$1; NAME=$2; MODE=${3:-h2}
cd /tmp/tlsh2
rm -rf data srv.out; mkdir data
"$BIN" --host 127.0.0.1 --port 0 --upload-dir data --log-level error --fsync none --tls-certificate cert.pem --tls-key key.pem > srv.out 2>srv.err &
PID=$!
for _ in $(seq 400); do grep -q listening srv.out && break; sleep 0.05; done
URL=$(awk '{print $3}' srv.out)
perf record -F 999 -g -p $PID -o $NAME.perf.data >/dev/null 2>&1 &
PP=$!; sleep 0.5
b=$(awk '{print $14+$15}' /proc/$PID/stat); s=$(date +%s.%N)
if [ $MODE = h2 ]; then
h2load -n 1 -c 1 -m 1 -t 1 -d single.bin -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $((512<<20))" -H "Content-Type: application/offset+octet-stream" "$URL" | grep -E "status codes"
else
/tmp/tlsh2-before/tus-bench single --url "$URL" --bytes 512MiB --insecure --timeout 600 | tail -1 | cut -c1-200
fi
e=$(date +%s.%N); a=$(awk '{print $14+$15}' /proc/$PID/stat)
kill -INT $PP; wait $PP || true
kill $PID; wait $PID || true
rm -rf data
python3 -c "t=($a-$b)/100; w=$e-$s; print(f'$NAME cpu_s_per_GiB={t*2:.2f} MBps={512*1.048576/w:.0f} load=' + open('/proc/loadavg').read().split()[0])" | tee -a results.txt
perf script -i $NAME.perf.data 2>/dev/null | swift demangle --simplified | python3 /work/wt-tlsh2/bench/flamegraph.py --title "$NAME" --svg $NAME.svg --text $NAME.txt
#keep
