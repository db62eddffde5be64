#!/bin/bash
# cg.sh BIN NAME h1|h2 MiB: one upload over TLS with the server under callgrind (user-space instructions)
BIN=$1; NAME=$2; MODE=$3; MIB=${4:-64}
cd /tmp/tlsh2
rm -rf data srv.out; mkdir data
head -c $((MIB<<20)) single.bin > cg.bin
valgrind --tool=callgrind --callgrind-out-file=$NAME.cg --dump-instr=no --trace-children=no \
  "$BIN" --host 127.0.0.1 --port 0 --upload-dir data --log-level error --fsync none --tls-certificate cert.pem --tls-key key.pem > srv.out 2>cg-$NAME.err &
PID=$!
for _ in $(seq 600); do grep -q listening srv.out && break; sleep 0.1; done
URL=$(awk '{print $3}' srv.out)
if [ $MODE = h2 ]; then
h2load -n 1 -c 1 -m 1 -t 1 -d cg.bin -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $((MIB<<20))" -H "Content-Type: application/offset+octet-stream" "$URL" | grep -E "status codes|finished"
else
/tmp/tlsh2-before/tus-bench single --url "$URL" --bytes ${MIB}MiB --insecure --timeout 600 | tail -1 | cut -c1-150
fi
kill -INT $PID; wait $PID
rm -rf data
callgrind_annotate $NAME.cg 2>/dev/null | head -40 > $NAME.cg.txt
grep -m1 "PROGRAM TOTALS" $NAME.cg.txt
