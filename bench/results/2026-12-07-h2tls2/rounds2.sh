#!/bin/bash
# usage: rounds2.sh N -> alternating: new1, newS (512 KiB TLS chunks), new1 pinned to CPU 0 (taskset), old
W=/tmp/h2tls2; cd $W
WHO=(new1 newS pin old)
for r in $(seq $1); do
  for k in 0 1 2 3; do
    w=${WHO[$(( (k + r - 1) % 4 ))]}
    case $w in
      pin) line=$(PIN="taskset -c 0" ./one.sh ./new1) ;;
      *) line=$(./one.sh ./$w) ;;
    esac
    echo "$r $w $line $(cut -d' ' -f1 /proc/loadavg)"
  done
done
