#!/bin/bash
# st.sh BIN NAME h1|h2 MiB: syscall counts of the server for one upload over TLS
BIN=$1; NAME=$2; MODE=$3; MIB=${4:-128}
cd /tmp/tlsh2
rm -rf data srv.out; mkdir data
head -c $((MIB<<20)) single.bin > st.bin
"$BIN" --host 127.0.0.1 --port 0 --upload-dir data --log-level error --fsync none --tls-certificate cert.pem --tls-key key.pem > srv.out 2>srv.err &
PID=$!
for _ in $(seq 400); do grep -q listening srv.out && break; sleep 0.05; done
URL=$(awk '{print $3}' srv.out)
strace -f -c -p $PID -o $NAME.strace 2>/dev/null &
SP=$!; sleep 0.5
if [ $MODE = h2 ]; then
h2load -n 1 -c 1 -m 1 -t 1 -d st.bin -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $((MIB<<20))" -H "Content-Type: application/offset+octet-stream" "$URL" | grep -E "status codes"
else
/tmp/tlsh2-before/tus-bench single --url "$URL" --bytes ${MIB}MiB --insecure --timeout 600 | tail -1 | cut -c1-100
fi
kill -INT $SP; wait $SP
kill $PID; wait $PID
rm -rf data
head -20 $NAME.strace
