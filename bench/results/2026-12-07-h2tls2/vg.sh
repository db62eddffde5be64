#!/bin/bash
# usage: vg.sh BIN MiB -> user-space instructions (callgrind Ir, all threads) of a server taking one h2+TLS upload
BIN=$1; MIB=$2; W=/tmp/h2tls2; DATA=$(mktemp -d /dev/shm/h2tls2.XXXX)
head -c $((MIB<<20)) $W/single.bin > $DATA.body
valgrind --tool=callgrind --callgrind-out-file=$DATA.cg --dump-instr=no "$BIN" --host 127.0.0.1 --port 0 --upload-dir "$DATA" \
  --log-level error --fsync none --tls-certificate $W/cert.pem --tls-key $W/key.pem > $DATA.out 2>$DATA.vg &
PID=$!
for _ in $(seq 1200); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
h2load -n 1 -c 1 -m 1 -t 1 -d $DATA.body -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $((MIB<<20))" \
   -H 'Content-Type: application/offset+octet-stream' $URL > $DATA.client 2>&1
ok=$(grep -c '1 2xx' $DATA.client)
kill -INT $PID; wait $PID 2>/dev/null
echo "$(basename $BIN) $MIB MiB ok=$ok Ir=$(grep -h '^summary' $DATA.cg* | awk '{s+=$2} END {print s}')"
cp $DATA.cg* $W/ 2>/dev/null
cat $DATA.vg | tail -5; cat $DATA.client | tail -3; rm -rf $DATA $DATA.out $DATA.client $DATA.body $DATA.vg $DATA.cg*
