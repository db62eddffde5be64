"""Failover of a Redis Cluster master as clients see it (bench/run-cluster --only-cluster-failover): 3 tus-server
instances on 3 masters + 3 replicas. Four clients each HEAD and PATCH 1 byte in turn (2 ms apart) on an upload of
their own, every request to the next instance; all four uploads are on the same master, which is then killed
(-9). Its replica takes over after cluster-node-timeout. With RESTART=1 (for --redis-min-replicas 1: the promoted
master has no replica left to confirm anything) the killed node is started again once its replica is the master,
as a supervisor would, and rejoins as that master's replica. Prints one markdown table row: first 503 -> first HEAD
200 and -> first PATCH 204, over the clients of the killed master. Every request carries an X-Request-ID
(`c<client>-<sequence>-<method>`), which the servers' debug log prints next to the status; each answer other than
200/204/409/503 is listed on stderr with its id, instance, time since the kill and body, to be found in those logs.

    cluster_failover.py "URL URL URL" "NODE_PORT ..." LABEL RESTART
"""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

urls, node_ports, label, restart = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3], sys.argv[4] == "1"
targets = [urllib.parse.urlsplit(url) for url in urls]


def redis(port: str, *arguments: str) -> str:
    try:
        return subprocess.run(["redis-cli", "-p", port, *arguments], capture_output=True, text=True,
                              timeout=5).stdout
    except subprocess.TimeoutExpired:
        return ""


unusual: list[str] = []
killed_at = None
sequence = itertools.count()


def call(turn: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
         client_index: int = -1):
    target = targets[turn % len(targets)]
    request_id = f"c{client_index}-{next(sequence)}-{method}"
    try:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        connection.request(method, path, body=body, headers={"Tus-Resumable": "1.0.0", "X-Request-ID": request_id,
                                                             **(headers or {})})
        response = connection.getresponse()
        text = response.read()
        connection.close()
    except OSError as error:
        unusual.append(f"{request_id} {target.port} {path} {moment()}: no answer ({error})")
        return None, None, None
    if response.status not in (200, 201, 204, 409, 503):
        unusual.append(f"{request_id} {target.port} {path} {moment()}: {response.status} "
                       f"{text[:200].decode(errors='replace')!r}")
    return response.status, response.getheader("Location"), response.getheader("Upload-Offset")


def moment() -> str:
    return f"{time.monotonic() - killed_at:+.3f} s after the kill" if killed_at else "before the kill"


def slot_owner_port(path: str) -> str:
    upload_id = path.rstrip("/").rsplit("/", 1)[1]
    slot = redis(node_ports[0], "CLUSTER", "KEYSLOT", upload_id).strip()
    for line in redis(node_ports[0], "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "master" not in fields[2]:
            continue
        for owned in fields[8:]:
            low, _, high = owned.partition("-")
            if low.isdigit() and int(low) <= int(slot) <= int(high or low):
                return fields[1].split(":")[1].split("@")[0]
    raise LookupError(slot)


# Four uploads on the master of the first one.
paths: list[str] = []
victim = None
while len(paths) < 4:
    _, location, _ = call(len(paths), "POST", targets[0].path, {"Upload-Length": "1000000"})
    path = urllib.parse.urlsplit(location).path
    owner = slot_owner_port(path)
    victim = victim or owner
    if owner == victim:
        paths.append(path)
victim_pid = int(redis(victim, "INFO", "server").split("process_id:")[1].split()[0])
victim_dir = redis(victim, "CONFIG", "GET", "dir").split()[1]
nodes = [line.split() for line in redis(victim, "CLUSTER", "NODES").splitlines()]
victim_id = next(fields[0] for fields in nodes if "myself" in fields[2])
replica = next(fields[1].split(":")[1].split("@")[0] for fields in nodes if fields[3] == victim_id)

seen: list[tuple[float, str, int | None]] = []
lock = threading.Lock()
killed = threading.Event()
done = threading.Event()


def client(index: int, path: str) -> None:
    offset = 0
    turn = index
    acknowledged_after_kill = False
    while not done.is_set():
        turn += 1
        status, _, _ = call(turn, "HEAD", path, client_index=index)
        with lock:
            seen.append((time.monotonic(), "HEAD", status))
        turn += 1
        status, _, reported = call(turn, "PATCH", path, {"Content-Type": "application/offset+octet-stream",
                                                        "Upload-Offset": str(offset)}, b"x", client_index=index)
        with lock:
            seen.append((time.monotonic(), "PATCH", status))
        if status == 204:
            offset = int(reported)
            if killed.is_set():
                acknowledged_after_kill = True
        elif status in (409, 503, 423):
            head = call(turn + 1, "HEAD", path, client_index=index)
            if head[0] == 200:
                offset = int(head[2])
        if acknowledged_after_kill and (restarted_at is not None or not restart):
            return
        time.sleep(0.002)


restarted_at = None
restarted = None
threads = [threading.Thread(target=client, args=(i, p)) for i, p in enumerate(paths)]
for thread in threads:
    thread.start()
time.sleep(1)
killed_at = time.monotonic()
os.kill(victim_pid, signal.SIGKILL)
killed.set()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and any(t.is_alive() for t in threads):
    if restart and restarted_at is None and "role:master" in redis(replica, "INFO", "replication"):
        restarted_at = time.monotonic()
        restarted = subprocess.Popen(["redis-server", "--port", victim, "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", victim_dir, "--daemonize", "no",
                                      "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                      "--cluster-node-timeout", "2000", "--logfile", victim_dir + "/restarted.log"])
    time.sleep(0.05)
done.set()
for thread in threads:
    thread.join()
if restarted is not None:  # stopped here: run-cluster's clean-up only knows the processes it started
    restarted.terminate()
    restarted.wait(timeout=10)

for line in unusual:
    print(f"{label}: {line}", file=sys.stderr)
after = sorted(r for r in seen if r[0] >= killed_at)
first_503 = next((t for t, _, s in after if s == 503), None)
first_head = next((t for t, m, s in after if first_503 and t > first_503 and m == "HEAD" and s == 200), None)
first_204 = next((t for t, m, s in after if first_503 and t > first_503 and m == "PATCH" and s == 204), None)
others = sorted({str(s) for _, _, s in seen if s not in (200, 204, 409, 503)})


def since_first_503(moment):
    return f"{moment - first_503:.2f} s" if moment and first_503 else "n/a"


restart_note = f"; old master restarted {since_first_503(restarted_at)} after the first 503" if restart else ""
print(f"| {label} (kill -9 of a master, 4 clients on it, 3 instances) | first 503 -> first HEAD 200: "
      f"{since_first_503(first_head)}; -> first PATCH 204: {since_first_503(first_204)}{restart_note}; "
      f"other statuses: {', '.join(others) or 'none'} | | | | | | | | | | |")
