#!/bin/bash
# usage: rounds.sh N WHO... (WHO = BINNAME:h1|h2 under /work/h2s-bins, or nginx) -> rotating order, one line per upload
N=$1; shift; WHO=("$@"); K=${#WHO[@]}
for r in $(seq $N); do
  for k in $(seq 0 $((K-1))); do
    w=${WHO[$(( (k + r - 1) % K ))]}
    if [ $w = nginx ]; then line=$(./ngxone.sh); elif [ $w = ngx13 ]; then line=$(NG=ngx13 NPORT=18984 ./ngxone2.sh); else line=$(./one.sh /work/h2s-bins/${w%%:*} ${w##*:}); fi
    echo "$r $line"
  done
done
