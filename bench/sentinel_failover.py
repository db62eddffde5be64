"""Failover as a client sees it (bench/run-cluster, Redis Sentinel section): one client HEADs and PATCHes 1 byte in
turn (2 ms apart) through one tus-server on Sentinel while the master is killed (-9); the old master is restarted
once every sentinel names the new one (as a supervisor would, but not earlier: without persistence it comes back
empty, and an empty master that returns before the promotion is synced from). With WAIT 1 and a single replica,
PATCHes are acknowledged again only once the old master has rejoined as a replica. Prints one markdown table row.

    sentinel_failover.py URL MASTER_PID MASTER_PORT REPLICA_PORT "SENTINEL_PORT ..." MASTER_DIR MASTER_NAME
"""

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.parse

url, master_pid, master_port, replica_port, sentinel_ports, master_dir, name = sys.argv[1:8]
target = urllib.parse.urlsplit(url)


def call(method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    try:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
        connection.request(method, path, body=body, headers={"Tus-Resumable": "1.0.0", **(headers or {})})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status, response.getheader("Location"), response.getheader("Upload-Offset")
    except OSError:
        return None, None, None


def every_sentinel_names(port: str) -> bool:
    for sentinel in sentinel_ports.split():
        named = subprocess.run(["redis-cli", "-p", sentinel, "sentinel", "get-master-addr-by-name", name],
                               capture_output=True, text=True, timeout=5).stdout.split()
        if named[1:2] != [port]:
            return False
    return True


_, location, _ = call("POST", target.path, {"Upload-Length": "1000000"})
path = urllib.parse.urlsplit(location).path
offset, seen, killed_at, restarted_at, restarted = 0, [], None, None, None
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    if killed_at is None and len(seen) > 50:
        killed_at = time.monotonic()
        os.kill(int(master_pid), signal.SIGKILL)
    if killed_at and restarted_at is None and every_sentinel_names(replica_port):
        restarted_at = time.monotonic()
        restarted = subprocess.Popen(["redis-server", "--port", master_port, "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", master_dir, "--daemonize", "no",
                          "--logfile", master_dir + "/restarted.log"])
    status, _, _ = call("HEAD", path)
    seen.append((time.monotonic(), "HEAD", status))
    status, _, reported = call("PATCH", path, {"Content-Type": "application/offset+octet-stream",
                                              "Upload-Offset": str(offset)}, b"x")
    seen.append((time.monotonic(), "PATCH", status))
    if status == 204:
        offset = int(reported)
        if killed_at and restarted_at:
            break
    elif status in (409, 503):
        head = call("HEAD", path)
        if head[0] == 200:
            offset = int(head[2])
    time.sleep(0.002)

if restarted is not None:  # stopped here: run-cluster's clean-up only knows the processes it started
    restarted.terminate()
    restarted.wait(timeout=10)

after = [r for r in seen if killed_at and r[0] >= killed_at]
first_503 = next((t for t, _, s in after if s == 503), None)
first_head = next((t for t, m, s in after if first_503 and t > first_503 and m == "HEAD" and s == 200), None)
first_204 = next((t for t, m, s in after if first_503 and t > first_503 and m == "PATCH" and s == 204), None)
others = sorted({str(s) for _, _, s in seen if s not in (200, 204, 409, 503)})


def since_first_503(moment):
    return f"{moment - first_503:.2f} s" if moment and first_503 else "n/a"


print(f"| sentinel-failover (kill -9 of the master, 1 client) | first 503 -> first HEAD 200: "
      f"{since_first_503(first_head)}; -> first PATCH 204: {since_first_503(first_204)} (old master restarted "
      f"{since_first_503(restarted_at)} after the first 503); other statuses: {', '.join(others) or 'none'} "
      f"| | | | | | | | | | |")
