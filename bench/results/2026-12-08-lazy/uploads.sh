#!/usr/bin/env bash
# Server CPU per full upload (POST + one PATCH of 64 KiB), base vs lazy, both record layouts, --fsync none, on the
# journaled ext4 image: per round and server a fresh server, 3 x `tus-bench concurrent -c 1024 --bytes 64K`, the
# server's utime+stime from /proc/<pid>/stat at the end (3,072 uploads, so the 10 ms clock tick is ~3 us per upload).
#   [FSYNC=commit COUNT=256] uploads.sh ROUNDS DISK_DIR BENCH_BIN name=PATH[,flags]...   -> a line per measurement
# (FSYNC: the servers' --fsync, default none; COUNT: uploads at once per tus-bench run, default 1024)
set -euo pipefail
rounds=$1 disk=$2 bench=$3; shift 3
servers=("$@")
tick=$(getconf CLK_TCK); fsync=${FSYNC:-none}; count=${COUNT:-1024}
for round in $(seq "$rounds"); do
  n=${#servers[@]}
  for k in $(seq 0 $((n - 1))); do
    entry=${servers[$(( (k + round) % n ))]}
    name=${entry%%=*}; IFS=, read -r -a command <<< "${entry#*=}"
    dir=$disk/up-$name; mkdir -p "$dir"; out=$(mktemp)
    "${command[@]}" --host 127.0.0.1 --port 0 --upload-dir "$dir" --log-level error --fsync "$fsync" > "$out" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
    url=$(awk '{print $3}' "$out"); rm -f "$out"
    start=$(date +%s.%N)
    for _ in 1 2 3; do "$bench" concurrent --url "$url" -c "$count" --bytes 64K > /dev/null; done
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    read -r -a stat < "/proc/$pid/stat"
    cpu=$(( stat[13] + stat[14] ))
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"; sync
    echo "round=$round server=$name fsync=$fsync uploads=$((3 * count)) cpu_ticks=$cpu" \
      "us_per_upload=$(( cpu * 1000000 / tick / (3 * count) )) wall_s=$wall"
  done
done
