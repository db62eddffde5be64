#!/bin/bash
# usage: ngx13.sh start|stop : as ngx.sh but TLSv1.2+1.3 (ssl_protocols), TLS port 18984, under /tmp/h2s/ngx13
W=/tmp/h2s; N=$W/ngx13; DATA=${DATAROOT:-/dev/shm}/h2s-ngx13
if [ "$1" = start ]; then
  rm -rf $N $DATA; mkdir -p $N $DATA/nginx-tmp $DATA/nginx-root/upload
  sed -e "s#@PREFIX@#$N#g" -e "s#@DATA@#$DATA#g" -e "s#@HTTP_PORT@#18983#g" -e "s#@TLS_PORT@#18984#g" \
    -e "s#@WORKERS@#1#g" -e "s#@BODY_BUF@#1m#g" -e "s#18984 ssl;#18984 ssl http2;#" \
    -e "s#ssl_certificate_key \(.*\);#ssl_certificate_key \1; ssl_protocols TLSv1.2 TLSv1.3;#" \
    /work/wt-h2s/bench/baselines/nginx.conf.template > $N/nginx.conf
  cp $W/cert.pem $W/key.pem $N/
  nginx -p $N -c $N/nginx.conf & echo $! > $N/master.pid
  sleep 1; pgrep -P $(cat $N/master.pid) > $N/worker.pid; cat $N/worker.pid
else
  kill $(cat $N/master.pid); rm -rf $DATA
fi
