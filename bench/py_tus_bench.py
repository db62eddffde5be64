"""A second client for the upload rows (issue 19): a small tus client on requests, so a ratio does not depend on
tus-bench alone. One thread per upload, all started together; each sends its whole body in one request:
  --mode tus: POST (Upload-Length) then one PATCH at offset 0 (what tus-bench `concurrent` does);
  --mode put: one PUT of the same bytes to URL + a fresh name (the nginx WebDAV sink).
The body is one pseudo-random buffer made before the clock starts (nothing is read from disk while measuring).
Prints one JSON line, with the fields tus-bench writes that the summaries read, and appends it to --json-out:
MB/s = 10^6 bytes of request body per second of wall time; server CPU from /proc/PID/stat around the run.

usage: py_tus_bench.py --mode tus|put --url URL --bytes N [-c N] [--server-pid PID[,PID]] [--label L] [--json-out F]
"""
import argparse
import json
import os
import threading
import time
import uuid

import requests


def server_cpu_seconds(pids):
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def upload_tus(session, url, body):
    created = session.post(url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(body))})
    if created.status_code != 201:
        raise RuntimeError(f"POST {created.status_code}")
    location = requests.compat.urljoin(url, created.headers["Location"])
    patched = session.patch(location, data=body, headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    if patched.status_code != 204 or int(patched.headers.get("Upload-Offset", -1)) != len(body):
        raise RuntimeError(f"PATCH {patched.status_code} offset {patched.headers.get('Upload-Offset')}")


def upload_put(session, url, body):
    put = session.put(url + uuid.uuid4().hex, data=body)
    if put.status_code not in (200, 201, 204):
        raise RuntimeError(f"PUT {put.status_code}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("tus", "put"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("--server-pid", default="")
    parser.add_argument("--label", default="py")
    parser.add_argument("--json-out")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    block = os.urandom(min(args.bytes, 8 << 20))
    body = (block * (args.bytes // len(block) + 1))[:args.bytes]
    upload = upload_tus if args.mode == "tus" else upload_put
    pids = [p for p in args.server_pid.split(",") if p]
    errors, latencies, lock = [], [], threading.Lock()
    start_gate = threading.Barrier(args.c + 1)

    def worker():
        session = requests.Session()
        start_gate.wait()
        began = time.monotonic()
        try:
            upload(session, args.url, body)
            with lock:
                latencies.append(time.monotonic() - began)
        except Exception as error:  # counted and reported, like tus-bench's errors
            with lock:
                errors.append(str(error))
        finally:
            session.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.c)]
    for thread in threads:
        thread.start()
    cpu_before = server_cpu_seconds(pids) if pids else None
    client_before = time.process_time()
    began = time.monotonic()
    start_gate.wait()
    for thread in threads:
        thread.join(args.timeout)
    wall = time.monotonic() - began
    cpu = round(server_cpu_seconds(pids) - cpu_before, 3) if pids else None
    if any(thread.is_alive() for thread in threads):
        errors.append("timeout")
    row = {
        "label": args.label, "scenario": f"python-{args.mode}", "url": args.url, "bytes": args.bytes,
        "concurrency": args.c, "loops": 1, "checksum": None, "runs": 1, "wall_seconds": round(wall, 4),
        "MBps": round(args.bytes * len(latencies) / wall / 1e6, 1), "requests": len(latencies),
        "p50_ms": round(sorted(latencies)[len(latencies) // 2] * 1000, 3) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 3) if latencies else None,
        "errors": args.c - len(latencies), "client_cpu_seconds": round(time.process_time() - client_before, 3),
        "server_cpu_seconds": cpu, "client": f"python requests {requests.__version__}",
        "error_samples": errors[:3],
    }
    line = json.dumps(row)
    print(f"| {args.label} | {row['MBps']} MB/s | {wall:.3f} s | errors {row['errors']} | server CPU {cpu} s |")
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
