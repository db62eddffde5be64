#!/bin/bash
# usage: vg.sh BIN MiB -> user-space instructions (callgrind Ir, all threads) of a server taking one HTTP/1.1+TLS
# upload from tus-bench. BIN: a `strip -g` copy (valgrind gives up on the static binary's debug info).
BIN=$1; MIB=$2; W=${WORK:-/tmp/tlsrec/prof}/w; DATA=$(mktemp -d /dev/shm/tlsh1.XXXX)
BENCH=${BENCH_BIN:-/work/main/.build-bench/release/tus-bench}
valgrind --tool=callgrind --callgrind-out-file=$DATA.cg --dump-instr=no "$BIN" --host 127.0.0.1 --port 0 \
  --upload-dir "$DATA" --log-level error --fsync none --tls-certificate $W/cert.pem --tls-key $W/key.pem \
  > $DATA.out 2>$DATA.vg &
PID=$!
for _ in $(seq 1200); do grep -q listening $DATA.out && break; sleep 0.05; done
URL=$(awk '{print $3}' $DATA.out)
$BENCH single --url $URL --bytes ${MIB}MiB --insecure --timeout 600 > $DATA.client 2>&1
kill -INT $PID; wait $PID 2>/dev/null
echo "$(basename $BIN) $MIB MiB errors=$(grep -o '"errors": *[0-9]*' $DATA.client | tail -1) Ir=$(grep -h '^summary' $DATA.cg* | awk '{s+=$2} END {print s}')"
if [ -n "$KEEP" ]; then cp $DATA.cg* "$KEEP" 2>/dev/null; fi
rm -rf $DATA $DATA.out $DATA.client $DATA.vg $DATA.cg*
