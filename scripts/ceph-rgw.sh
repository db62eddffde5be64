#!/usr/bin/env bash
# A throwaway single-node Ceph RADOS Gateway (S3 API) on 127.0.0.1, for the S3 store's tests and bench.
#
#   scripts/ceph-rgw.sh start DIR    start mon + memstore OSD + radosgw under DIR; prints DIR/env
#   scripts/ceph-rgw.sh stop DIR     stop them by the PIDs recorded in DIR (radosgw, OSD, then mon)
#
# DIR/env (shell syntax) names RGW_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, RGW_PID, OSD_PID, MON_PID.
# One MON, one memstore OSD (data in RAM), no mgr, no cephx: ready in a few seconds. The settings and their
# reasons are the ones measured in /work/shared/ENGINES.md; every ceph / radosgw-admin call is bounded with
# `timeout` because they block forever when the mon cannot be reached. Needs apt radosgw ceph-mon ceph-osd
# ceph-common (scripts/bootstrap.sh).
set -euo pipefail

command="${1:-}"
dir="${2:-}"
[[ -n "$command" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stop_pid() {  # SIGCONT first (a test may have paused it), SIGTERM, SIGKILL after $2 seconds
    local pid="$1" grace="$2"
    [[ -n "$pid" ]] || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || return 0
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        # killed daemons linger as zombies of our shell's children only if we started them here; ours are
        # reparented, so /proc state Z means gone
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
        if ((waited >= grace * 10)); then kill -KILL "$pid" 2>/dev/null || true; return 0; fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

case "$command" in
stop)
    [[ -f "$dir/env" ]] || exit 0
    # shellcheck disable=SC1091
    source "$dir/env"
    stop_pid "${RGW_PID:-}" 1
    stop_pid "${OSD_PID:-}" 3
    stop_pid "${MON_PID:-}" 3
    exit 0
    ;;
start) ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

mkdir -p "$dir"/{run,log,mon,osd/ceph-0,rgw}
dir="$(cd "$dir" && pwd)"
conf="$dir/ceph.conf"
mon_port="$(free_port)"  # never the default 3300: a second cluster's CLI would talk to the first one's mon
rgw_port="$(free_port)"
fsid="$(cat /proc/sys/kernel/random/uuid)"
osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
access_key="TUSTESTACCESSKEY"
secret_key="tus-test-secret-key-0123456789"

cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
auth cluster required = none
auth service required = none
auth client required = none
# without it radosgw hangs at start when cephx is off
ms mon client mode = crc secure
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-10737418240}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
keyring = $dir/keyring
[client.rgw.tus]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = 127.0.0.1
rgw data = $dir/rgw
CONF

ceph_cli() { timeout 20 ceph -c "$conf" "$@"; }

ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
timeout 30 ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -c "$conf" -i a -f >"$dir/log/mon.out" 2>&1 &
mon_pid=$!
echo "MON_PID=$mon_pid" >"$dir/env"

osd_id="$(ceph_cli osd new "$osd_uuid")"
timeout 30 ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1
ceph-osd -c "$conf" -i "$osd_id" -f >"$dir/log/osd.out" 2>&1 &
osd_pid=$!
echo "OSD_PID=$osd_pid" >>"$dir/env"

deadline=$((SECONDS + 60))
until ceph_cli osd stat 2>/dev/null | grep -q "1 up"; do
    ((SECONDS < deadline)) || { echo "ceph-rgw: OSD not up within 60 s (logs in $dir/log)" >&2; exit 1; }
    sleep 0.2
done

radosgw -c "$conf" -n client.rgw.tus -f >"$dir/log/rgw.out" 2>&1 &
rgw_pid=$!
echo "RGW_PID=$rgw_pid" >>"$dir/env"
until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$rgw_port/"; do
    ((SECONDS < deadline)) || { echo "ceph-rgw: radosgw not answering within 60 s (logs in $dir/log)" >&2; exit 1; }
    kill -0 "$rgw_pid" 2>/dev/null || { echo "ceph-rgw: radosgw exited (logs in $dir/log)" >&2; exit 1; }
    sleep 0.2
done
timeout 30 radosgw-admin -c "$conf" user create --uid=tus --display-name=tus \
    --access-key="$access_key" --secret="$secret_key" >/dev/null

cat >>"$dir/env" <<ENV
RGW_ENDPOINT=http://127.0.0.1:$rgw_port
AWS_ACCESS_KEY_ID=$access_key
AWS_SECRET_ACCESS_KEY=$secret_key
ENV
cat "$dir/env"
