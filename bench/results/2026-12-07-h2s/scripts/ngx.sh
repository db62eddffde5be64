#!/bin/bash
# usage: ngx.sh start|stop : nginx h2 TLS PUT sink on 18982 under /tmp/h2s/ngx (data on /dev/shm)
W=/tmp/h2s; N=$W/ngx; DATA=${DATAROOT:-/dev/shm}/h2s-ngx
if [ "$1" = start ]; then
  rm -rf $N $DATA; mkdir -p $N $DATA/nginx-tmp $DATA/nginx-root/upload
  sed -e "s#@PREFIX@#$N#g" -e "s#@DATA@#$DATA#g" -e "s#@HTTP_PORT@#18981#g" -e "s#@TLS_PORT@#18982#g" \
    -e "s#@WORKERS@#1#g" -e "s#@BODY_BUF@#1m#g" -e "s#18982 ssl;#18982 ssl http2;#" \
    /work/wt-h2s/bench/baselines/nginx.conf.template > $N/nginx.conf
  cp $W/cert.pem $W/key.pem $N/
  nginx -p $N -c $N/nginx.conf & echo $! > $N/master.pid
  sleep 1; pgrep -P $(cat $N/master.pid) > $N/worker.pid; cat $N/worker.pid
else
  kill $(cat $N/master.pid); rm -rf $DATA
fi
