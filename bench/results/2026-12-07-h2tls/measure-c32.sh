#!/bin/bash
# meas.sh LABEL BIN [server args...]: 32 x 32 MiB h2+TLS upload (h2load POST), prints server CPU s/GiB and MB/s
LABEL=$1; BIN=$2; shift 2
cd /tmp/h2p; rm -rf data; mkdir data
"$BIN" --host 127.0.0.1 --port 0 --upload-dir data --log-level error --fsync none --tls-certificate cert.pem --tls-key key.pem "$@" > srv.out 2>srv.err &
PID=$!
for _ in $(seq 400); do grep -q listening srv.out && break; sleep 0.05; done
URL=$(awk '{print $3}' srv.out)
sync; sleep 0.3
b=$(awk '{print $14+$15}' /proc/$PID/stat); s=$(date +%s.%N)
out=$(h2load -n 32 -c 32 -m 1 -t 1 -d conc.bin -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $((32<<20))" -H "Content-Type: application/offset+octet-stream" "$URL")
e=$(date +%s.%N); a=$(awk '{print $14+$15}' /proc/$PID/stat)
ok=$(echo "$out" | grep -o "[0-9]* 2xx")
kill $PID; wait $PID 2>/dev/null; rm -rf data
python3 -c "import sys; t=($a-$b)/100; w=$e-$s; print(f'$LABEL cpu_s_per_GiB={t:.2f} MBps={1024*1.048576/w:.0f} ok=\"$ok\" c32 load=' + open('/proc/loadavg').read().split()[0])" | tee -a results.txt
