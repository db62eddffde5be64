#!/bin/bash
# usage: ngxone.sh [perf record args...] -> "nginx ticks seconds"; needs ngx.sh start
W=/tmp/h2tls2; WP=$(cat $W/ngx/worker.pid)
if [ $# -gt 0 ]; then perf record "$@" -p $WP 2>/dev/null >/dev/null & PP=$!; sleep 0.5; fi
t0=$(awk '{print $14+$15}' /proc/$WP/stat); s=$(date +%s.%N)
h2load -n 1 -c 1 -m 1 -t 1 -d $W/single.bin -H ":method: PUT" https://127.0.0.1:18972/upload/single > $W/ngx.client 2>&1
e=$(date +%s.%N); t1=$(awk '{print $14+$15}' /proc/$WP/stat)
[ $# -gt 0 ] && { kill -INT $PP; wait $PP; }
echo "nginx $((t1-t0)) $(echo "$e - $s" | bc) ok=$(grep -c '1 2xx' $W/ngx.client)"
rm -f /dev/shm/h2tls2-ngx/nginx-root/upload/*
