#!/bin/bash
# usage: ngxone.sh [stat ARGS | record ARGS] -> "nginx h2 ticks u s seconds ok"; needs ngx.sh start
W=/tmp/h2s; NG=${NG:-ngx}; NPORT=${NPORT:-18982}; WP=$(cat $W/$NG/worker.pid); PP=
if [ "$1" = stat ]; then shift; perf stat "$@" -p $WP -o $W/ngx.stat & PP=$!; sleep 0.3;
elif [ "$1" = record ]; then shift; perf record "$@" -p $WP 2>/dev/null >/dev/null & PP=$!; sleep 0.5; fi
read u0 s0 < <(awk '{print $14, $15}' /proc/$WP/stat); s=$(date +%s.%N)
h2load -n 1 -c 1 -m 1 -t 1 -d $W/single.bin -H ":method: PUT" https://127.0.0.1:$NPORT/upload/single > $W/ngx.client 2>&1
e=$(date +%s.%N); read u1 s1 < <(awk '{print $14, $15}' /proc/$WP/stat)
[ -n "$PP" ] && { kill -INT $PP; wait $PP; }
echo "$NG h2 $((u1-u0+s1-s0)) u=$((u1-u0)) s=$((s1-s0)) $(echo "$e - $s" | bc) ok=$(grep -c '1 2xx' $W/ngx.client) load=$(cut -d' ' -f1 /proc/loadavg)"
[ -f $W/ngx.stat ] && cp $W/ngx.stat $W/last.stat && rm $W/ngx.stat
rm -f ${DATAROOT:-/dev/shm}/h2s-$NG/nginx-root/upload/*
