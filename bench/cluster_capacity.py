"""Redis operations and bytes per tus operation, measured (bench/run-cluster --only-capacity; docs/CAPACITY.md):
a known workload through several tus-server instances on a Redis Cluster, with `CONFIG RESETSTAT` on every master
before each phase and `INFO commandstats` + `INFO stats` after it, summed over the masters. An idle phase first
gives the background rate (subscriber keep-alive PINGs), which is subtracted from each phase by its duration.
Prints a markdown table (commands, calls and bytes per operation, Redis CPU per operation from usec_per_call) and
one JSON line per phase.

    cluster_capacity.py "URL URL ..." "MASTER_PORT ..." LEASE_SECONDS
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse

urls = sys.argv[1].split()
master_ports = sys.argv[2].split()
lease = float(sys.argv[3])
targets = [urllib.parse.urlsplit(url) for url in urls]
MiB = 1 << 20


def redis(port: str, *arguments: str) -> str:
    return subprocess.run(["redis-cli", "-p", port, *arguments], capture_output=True, text=True, timeout=10).stdout


def reset() -> None:
    for port in master_ports:
        redis(port, "CONFIG", "RESETSTAT")


def snapshot() -> dict:
    """Calls and usec per command, and network bytes in and out, summed over the masters."""
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    net_in = net_out = 0
    for port in master_ports:
        for line in redis(port, "INFO", "commandstats").splitlines():
            if not line.startswith("cmdstat_"):
                continue
            name, _, fields = line.partition(":")
            values = dict(item.split("=") for item in fields.split(","))
            command = name[len("cmdstat_"):]
            if command.startswith(("config", "info")):
                continue  # this script's own resets and reads
            calls[command] = calls.get(command, 0) + int(values["calls"])
            usec[command] = usec.get(command, 0) + int(values["usec"])
        for line in redis(port, "INFO", "stats").splitlines():
            if line.startswith("total_net_input_bytes:"):
                net_in += int(line.split(":")[1])
            elif line.startswith("total_net_output_bytes:"):
                net_out += int(line.split(":")[1])
    return {"calls": calls, "usec": usec, "in": net_in, "out": net_out}


def call(index: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    target = targets[index % len(targets)]
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    connection.request(method, path, body=body, headers={"Tus-Resumable": "1.0.0", **(headers or {})})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def in_parallel(jobs, threads: int = 8) -> None:
    jobs = list(jobs)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not jobs:
                    return
                job = jobs.pop()
            job()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


results = []


def phase(name: str, operations: int, unit: str, body) -> None:
    reset()
    started = time.monotonic()
    body()
    seconds = time.monotonic() - started
    stats = snapshot()
    results.append((name, operations, unit, seconds, stats))


# Background: idle instances (subscriber PINGs, nothing else).
phase("idle", 1, "second", lambda: time.sleep(3))
background = results[0][4]
background_seconds = results[0][3]

paths: list[str] = []


def create(index: int, length: int) -> None:
    response = call(index, "POST", targets[0].path, {"Upload-Length": str(length), "Upload-Metadata": "filename YQ=="})
    assert response.status == 201, response.status
    paths.append(urllib.parse.urlsplit(response.getheader("Location")).path)


CREATES, HEADS, LARGE, LARGE_SIZE, SMALL, SMALL_SIZE = 300, 1500, 12, 24 * MiB, 300, 64 << 10
phase("POST (create)", CREATES, "upload created",
      lambda: in_parallel(lambda i=i: create(i, LARGE_SIZE if i < LARGE else SMALL_SIZE) for i in range(CREATES)))
# Creation order is not index order: tell them apart by length (before the measured phases).
large_paths = [p for p in paths if int(call(0, "HEAD", p).getheader("Upload-Length")) == LARGE_SIZE]
small_paths = [p for p in paths if p not in large_paths]

phase("HEAD", HEADS, "HEAD", lambda: in_parallel(lambda i=i: call(i, "HEAD", paths[i % len(paths)])
                                                  for i in range(HEADS)))

small_body = b"s" * SMALL_SIZE


def small_patch(i: int) -> None:
    response = call(i, "PATCH", small_paths[i], {"Content-Type": "application/offset+octet-stream",
                                                 "Upload-Offset": "0"}, small_body)
    assert response.status == 204, response.status


phase("PATCH 64 KiB (whole upload)", len(small_paths), "PATCH",
      lambda: in_parallel(lambda i=i: small_patch(i) for i in range(len(small_paths))))

large_body = b"L" * LARGE_SIZE


def large_patch(i: int) -> None:
    response = call(i, "PATCH", large_paths[i], {"Content-Type": "application/offset+octet-stream",
                                                 "Upload-Offset": "0"}, large_body)
    assert response.status == 204, response.status


phase("PATCH 24 MiB (whole upload)", len(large_paths), "PATCH",
      lambda: in_parallel((lambda i=i: large_patch(i) for i in range(len(large_paths))), threads=4))

# Slow uploads: 5 PATCHes each streaming 64 KiB every 0.25 s for 6 s (lease renewals and time checkpoints).
SLOW, SLOW_SECONDS = 5, 6.0
slow_paths: list[str] = []
for i in range(SLOW):
    response = call(i, "POST", targets[0].path, {"Upload-Length": str(64 << 20)})
    slow_paths.append(urllib.parse.urlsplit(response.getheader("Location")).path)


def slow_patch(i: int) -> None:
    target = targets[i % len(targets)]
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    chunks = int(SLOW_SECONDS / 0.25)

    def body():
        for _ in range(chunks):
            yield b"w" * (64 << 10)
            time.sleep(0.25)

    connection.request("PATCH", slow_paths[i], body=body(), headers={
        "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0",
        "Content-Length": str(chunks * (64 << 10))}, encode_chunked=False)
    response = connection.getresponse()
    response.read()
    assert response.status == 204, response.status


phase(f"{SLOW} PATCHes streaming {SLOW_SECONDS:.0f} s each (lease {lease:g} s)", int(SLOW * SLOW_SECONDS),
      "upload-second", lambda: in_parallel((lambda i=i: slow_patch(i) for i in range(SLOW)), threads=SLOW))

print("| phase | per | Redis calls / op (by command) | calls / op | bytes in / op | bytes out / op | "
      "Redis CPU µs / op |")
print("|---|---|---|---|---|---|---|")
for name, operations, unit, seconds, stats in results[1:]:
    scale = seconds / background_seconds
    per_command = {}
    for command, calls in stats["calls"].items():
        net = calls - background["calls"].get(command, 0) * scale
        if net > 0.05 * operations:
            per_command[command] = net / operations
    total = sum(per_command.values())
    usec = sum(stats["usec"].get(c, 0) - background["usec"].get(c, 0) * scale for c in per_command) / operations
    net_in = (stats["in"] - background["in"] * scale) / operations
    net_out = (stats["out"] - background["out"] * scale) / operations
    listing = ", ".join(f"{command} {value:.2f}" for command, value in sorted(per_command.items()))
    print(f"| {name} | {unit} | {listing} | {total:.2f} | {net_in:.0f} | {net_out:.0f} | {usec:.1f} |")
    print(json.dumps({"phase": name, "operations": operations, "unit": unit, "seconds": round(seconds, 3),
                      "per_command": per_command, "bytes_in_per_op": net_in, "bytes_out_per_op": net_out,
                      "redis_usec_per_op": usec}), file=sys.stderr)
print(f"| idle background | second | " + ", ".join(
    f"{c} {v / background_seconds:.1f}" for c, v in sorted(background["calls"].items())) + " | | | | |")
