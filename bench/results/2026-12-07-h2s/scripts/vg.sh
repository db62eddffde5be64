#!/bin/bash
# usage: vg.sh BIN h1|h2 MiB TAG -> user-space instructions (callgrind Ir, all threads) for one TLS upload
BIN=$1; MODE=$2; MIB=$3; TAG=$4; W=/tmp/h2s; DATA=$(mktemp -d /dev/shm/h2svg.XXXX)
head -c $((MIB<<20)) $W/single.bin > $DATA.body
valgrind --tool=callgrind --callgrind-out-file=$W/cg-$TAG.%p --dump-instr=no "$BIN" --host 127.0.0.1 --port 0 --upload-dir "$DATA" \
  --log-level error --fsync none --tls-certificate $W/cert.pem --tls-key $W/key.pem > $DATA.out 2>$DATA.vg &
PID=$!
for _ in $(seq 1200); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
if [ $MODE = h2 ]; then
h2load -n 1 -c 1 -m 1 -t 1 -d $DATA.body -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $((MIB<<20))" \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
ok=$(grep -c '1 2xx' $DATA.client)
else
/work/h2s-bins/tus-bench single --url $URL --bytes ${MIB}MiB --insecure --timeout 600 > $DATA.client 2>&1
ok=$(grep -c '"errors":0' $DATA.client)
fi
kill -INT $PID; wait $PID 2>/dev/null
echo "$TAG $MODE $MIB MiB ok=$ok Ir=$(grep -h '^summary' $W/cg-$TAG.* | awk '{s+=$2} END {print s}')"
rm -rf $DATA $DATA.out $DATA.client $DATA.body $DATA.vg
