#!/bin/bash
# usage: rounds.sh N  -> alternating rounds of one 512 MiB h2+TLS upload each: old, new1, newA, nginx (tmpfs)
W=/tmp/h2tls2; cd $W
WHO=(old new1 newA nginx)
for r in $(seq $1); do
  for k in 0 1 2 3; do
    w=${WHO[$(( (k + r - 1) % 4 ))]}
    if [ $w = nginx ]; then line=$(./ngxone.sh); else line=$(./one.sh ./$w); fi
    echo "$r $w $line $(cut -d' ' -f1 /proc/loadavg)"
  done
done
