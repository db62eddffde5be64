#!/bin/bash
# usage: both.sh BIN -> server and client (tus-bench) CPU seconds per GiB for one 512 MiB HTTP/1.1+TLS upload:
# on loopback the kernel work of one side's packets is often done in the other's context (softirq), so a change
# that moves CPU from the server to the client shows here.
BIN=$1; W=${WORK:-/tmp/tlsh1/prof}/w; DATA=$(mktemp -d /tmp/tlsh1-both.XXXX)
BENCH=${BENCH_BIN:-/work/main/.build-bench/release/tus-bench}
$BIN --host 127.0.0.1 --port 0 --upload-dir $DATA --log-level error --fsync none \
  --tls-certificate $W/cert.pem --tls-key $W/key.pem > $DATA.out 2>/dev/null & PID=$!
for _ in $(seq 200); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
$BENCH concurrent --url $URL --bytes 1MiB -c 8 --insecure --timeout 60 >/dev/null 2>&1
read u0 s0 < <(awk '{print $14, $15}' /proc/$PID/stat)
/usr/bin/time -f "%U %S" -o $DATA.time $BENCH single --url $URL --bytes 512MiB --insecure --timeout 600 > $DATA.client 2>&1
read u1 s1 < <(awk '{print $14, $15}' /proc/$PID/stat)
kill $PID; wait $PID 2>/dev/null
read cu cs < $DATA.time
python3 -c "
u=($u1-$u0)/100*2; s=($s1-$s0)/100*2; cu=$cu*2; cs=$cs*2
print(f'$(basename $BIN): server user {u:.2f} sys {s:.2f} = {u+s:.2f} s/GiB; client user {cu:.2f} sys {cs:.2f} = {cu+cs:.2f}; sum {u+s+cu+cs:.2f}')"
rm -rf $DATA $DATA.out $DATA.client $DATA.time
