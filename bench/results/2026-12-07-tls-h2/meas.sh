#!/bin/bash
# meas.sh LABEL BIN single|c32|h1single (h1single: tus-bench over HTTP/1.1) [server args...]: one h2+TLS run (h2load), prints server CPU s/GiB, minflt/MiB, MB/s
LABEL=$1; BIN=$2; KIND=$3; shift 3
cd /tmp/tlsh2; rm -rf data srv.out; mkdir data
[ -f conc.bin ] || head -c $((32<<20)) single.bin > conc.bin
"$BIN" --host 127.0.0.1 --port 0 --upload-dir data --log-level error --fsync none --tls-certificate cert.pem --tls-key key.pem "$@" > srv.out 2>srv.err &
PID=$!
for _ in $(seq 400); do grep -q listening srv.out && break; sleep 0.05; done
URL=$(awk '{print $3}' srv.out)
sync; sleep 0.3
if [ $KIND != c32 ]; then N=1; F=single.bin; MIB=512; else N=32; F=conc.bin; MIB=1024; fi
b=$(awk '{print $14+$15, $10}' /proc/$PID/stat); s=$(date +%s.%N)
if [ $KIND = h1single ]; then out=$(/tmp/tlsh2-before/tus-bench single --url "$URL" --bytes 512MiB --insecure --timeout 600); ok=$(echo "$out" | grep -o '"errors":0' | sed 's/.*/1 2xx/'); else
out=$(h2load -n $N -c $N -m 1 -t 1 -d $F -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $(stat -c %s $F)" -H "Content-Type: application/offset+octet-stream" "$URL")
fi
e=$(date +%s.%N); a=$(awk '{print $14+$15, $10}' /proc/$PID/stat)
[ $KIND = h1single ] || ok=$(echo "$out" | grep -o "[0-9]* 2xx")
kill $PID; wait $PID 2>/dev/null; rm -rf data
python3 -c "
b='$b'.split(); a='$a'.split(); t=(int(a[0])-int(b[0]))/100; f=int(a[1])-int(b[1]); w=$e-$s
print(f'$LABEL $KIND cpu_s_per_GiB={t*1024/$MIB:.2f} minflt_per_MiB={f/$MIB:.1f} MBps={$MIB*1.048576/w:.0f} ok=\"$ok\" load=' + open('/proc/loadavg').read().split()[0])" | tee -a results.txt
