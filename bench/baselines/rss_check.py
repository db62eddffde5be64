#!/usr/bin/env python3
"""Memory evidence for the foundation issue, without tus-bench (plain sockets, stdlib only).

  fast  : one 1 GiB PATCH pushed as fast as loopback allows; server peak RSS (VmHWM) sampled.
  slow  : one PATCH of --slow-bytes at --slow-rate B/s (a slow client); server RSS sampled.
  idle  : --idle-count keep-alive connections, each sends one OPTIONS and then holds; RSS delta / count.

Each mode starts its own tus-server (by path) on 127.0.0.1 with a fresh upload dir, and stops it by PID.
Prints one JSON object per mode on stdout.
"""
import argparse
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / ticks  # utime + stime


class Server:
    def __init__(self, binary, upload_dir, extra):
        self.proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", "0", "--upload-dir", upload_dir,
             "--log-level", "error", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on"):
            self.stop()
            raise SystemExit(f"server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Sampler(threading.Thread):
    """Samples VmRSS every 10 ms; VmHWM is the kernel's own peak, read at the end."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_rss, self.running = pid, 0, True

    def run(self):
        while self.running:
            try:
                self.peak_rss = max(self.peak_rss, proc_status(self.pid)["VmRSS"])
            except (FileNotFoundError, KeyError):
                return
            time.sleep(0.01)


def request(port, raw, read_body=False):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(raw)
    data = read_response(s)
    s.close()
    return data


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def create_upload(port, length):
    resp = request(port, (
        f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Length: {length}\r\nContent-Length: 0\r\n\r\n").encode())
    for line in resp.split(b"\r\n"):
        if line.lower().startswith(b"location:"):
            loc = line.split(b":", 1)[1].strip().decode()
            return "/" + loc.split("/", 3)[3] if loc.startswith("http") else loc
    raise SystemExit(f"create failed: {resp[:200]!r}")


def patch(port, path, length, rate=None):
    """Streams `length` pseudo-random bytes from one reusable 1 MiB buffer; rate in B/s or None."""
    buf = os.urandom(1 << 20)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {length}\r\n\r\n").encode())
    sent, start = 0, time.monotonic()
    piece = len(buf) if rate is None else 64 * 1024
    while sent < length:
        n = min(piece, length - sent)
        s.sendall(memoryview(buf)[:n])
        sent += n
        if rate is not None:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    resp = read_response(s)
    elapsed = time.monotonic() - start
    s.close()
    status = resp.split(b"\r\n", 1)[0].decode(errors="replace")
    return status, elapsed


def run_upload(args, label, length, rate):
    with tempfile.TemporaryDirectory(dir=args.data_dir) as upload_dir:
        server = Server(args.server, upload_dir, args.server_arg)
        try:
            base = proc_status(server.pid)
            path = create_upload(server.port, length)
            sampler = Sampler(server.pid)
            sampler.start()
            cpu0 = proc_cpu_seconds(server.pid)
            status, elapsed = patch(server.port, path, length, rate)
            sampler.running = False
            sampler.join()
            end = proc_status(server.pid)
            cpu = proc_cpu_seconds(server.pid) - cpu0
        finally:
            server.stop()
    return {
        "mode": label, "bytes": length, "rate_limit_Bps": rate, "status": status,
        "seconds": round(elapsed, 3), "MBps": round(length / elapsed / 1e6, 1),
        "server_cpu_seconds": round(cpu, 3),
        "server_rss_before_MiB": round(base["VmRSS"] / 2**20, 2),
        "server_peak_rss_sampled_MiB": round(sampler.peak_rss / 2**20, 2),
        "server_VmHWM_MiB": round(end["VmHWM"] / 2**20, 2),
        "limit_MiB": 64, "met": end["VmHWM"] < 64 * 2**20,
    }


def run_idle(args):
    count = args.idle_count
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < count + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} too low for {count} connections")
    with tempfile.TemporaryDirectory(dir=args.data_dir) as upload_dir:
        server = Server(args.server, upload_dir,
                        ["--max-connections", str(count + 100), "--idle-timeout", "600", *args.server_arg])
        socks = []
        try:
            # Warm up: one full request cycle so lazily allocated pools are counted in the baseline.
            for _ in range(4):
                request(server.port, b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n")
            time.sleep(0.2)
            before = proc_status(server.pid)
            sel = selectors.DefaultSelector()
            req = b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\r\n"
            answered = 0
            start = time.monotonic()
            for i in range(count):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", server.port))
                except BlockingIOError:
                    pass
                socks.append(s)
                sel.register(s, selectors.EVENT_WRITE, "connect")
                if len(sel.get_map()) >= 500 or i == count - 1:
                    # Drain the batch: send on connect, read the response, then hold the socket idle.
                    while sel.get_map():
                        for key, ev in sel.select(timeout=10):
                            sock = key.fileobj
                            if key.data == "connect":
                                sock.send(req)
                                sel.modify(sock, selectors.EVENT_READ, "read")
                            else:
                                data = sock.recv(4096)
                                if data.startswith(b"HTTP/1.1 2"):
                                    answered += 1
                                sel.unregister(sock)
                        if time.monotonic() - start > 120:
                            raise SystemExit("idle: timed out opening connections")
            time.sleep(1.0)
            after = proc_status(server.pid)
            alive = proc_status(server.pid)
        finally:
            for s in socks:
                s.close()
            server.stop()
    delta = after["VmRSS"] - before["VmRSS"]
    per = delta / count
    return {
        "mode": "idle", "connections": count, "answered": answered,
        "server_rss_before_MiB": round(before["VmRSS"] / 2**20, 2),
        "server_rss_with_connections_MiB": round(after["VmRSS"] / 2**20, 2),
        "rss_delta_per_connection_KiB": round(per / 1024, 2),
        "limit_KiB": 10, "met": per < 10 * 1024 and answered == count,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, help="path to the tus-server binary (release)")
    p.add_argument("--data-dir", default=None, help="parent of the temporary upload dirs")
    p.add_argument("--fast-bytes", type=int, default=1 << 30)
    p.add_argument("--slow-bytes", type=int, default=64 << 20)
    p.add_argument("--slow-rate", type=int, default=8_000_000)
    p.add_argument("--idle-count", type=int, default=10_000)
    p.add_argument("--modes", default="fast,slow,idle")
    p.add_argument("--server-arg", action="append", default=[], help="extra tus-server flag (repeatable)")
    args = p.parse_args()
    for mode in args.modes.split(","):
        if mode == "fast":
            result = run_upload(args, "fast", args.fast_bytes, None)
        elif mode == "slow":
            result = run_upload(args, "slow", args.slow_bytes, args.slow_rate)
        elif mode == "idle":
            result = run_idle(args)
        else:
            raise SystemExit(f"unknown mode {mode}")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
