"""HTTP/2 abuse side by side (issue 21 §1): tus-server and nginx (Debian nginx-light 1.22, `http2` on the same TLS
listener, one worker) under the same attacks from Tests/interop/h2_helpers.py, each sustained for --seconds (a
client reconnecting and attacking again) while another client sends HEADs on its own connection. Reports per
attack and server: the server's CPU per abusive connection, how each connection ended (GOAWAY code / closed /
still open when the attacker gave up), and the other client's HEAD p50/p99 before and during the attack.

    .venv/bin/python bench/h2_abuse.py --tus-bin .build/release/tus-server --out bench/results/DATE-h2-abuse

Both servers get one event loop / worker on the same box as the attacker: absolute numbers are noisy, compare the
two rows of one attack (they run back to back)."""

import argparse
import collections
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "Tests" / "interop"))
from h2_helpers import (LatencyProbe, cpu_seconds, flood_connection, hpack_bomb_connection,  # noqa: E402
                        rapid_reset_connection, tus_patch_fields)
from test_tls import make_ca, make_leaf  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--tus-bin", required=True)
parser.add_argument("--nginx-bin", default="/usr/sbin/nginx")
parser.add_argument("--seconds", type=float, default=5.0)
parser.add_argument("--out", required=True)
parser.add_argument("--attacks", default="hpack-bomb,empty-data,priority,window-update,ping,settings,rst-stream,"
                    "empty-headers,rapid-reset")
args = parser.parse_args()

FLOODS = {"empty-data", "priority", "window-update", "ping", "settings", "rst-stream", "empty-headers"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Target:
    name: str
    port: int
    process: subprocess.Popen
    probe_path: str

    def pids(self) -> list[int]:
        pids = [self.process.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == self.process.pid:
                    pids.append(int(entry))
        return pids

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class Tus(Target):
    def __init__(self, directory: pathlib.Path, pem, key):
        self.name = "tus-server"
        uploads = directory / "tus-uploads"
        uploads.mkdir()
        self.process = subprocess.Popen(
            [args.tus_bin, "--host", "127.0.0.1", "--port", "0", "--loops", "1", "--upload-dir", str(uploads),
             "--tls-certificate", str(pem), "--tls-key", str(key), "--body-timeout", "5", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline().strip()
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])
        from h2_helpers import H2Client
        with H2Client(self.port, str(directory / "ca.pem")) as client:
            stream = client.get(client.request("POST", "/files/", {"tus-resumable": "1.0.0",
                                                                  "upload-length": "1000"}))
            self.probe_path = "/" + stream.headers["location"].split("/", 3)[3]
        self.uploads = []

    def upload(self, index: int):
        # A fresh upload per attacking connection: no lock takeover between attackers.
        from h2_helpers import H2Client
        with H2Client(self.port, args_cafile) as client:
            stream = client.get(client.request("POST", "/files/", {"tus-resumable": "1.0.0",
                                                                  "upload-length": "1000"}))
            return tus_patch_fields("/" + stream.headers["location"].split("/", 3)[3])


class Nginx(Target):
    def __init__(self, directory: pathlib.Path, pem, key):
        self.name = "nginx"
        root = directory / "nginx"
        (root / "www" / "files").mkdir(parents=True)
        (root / "www" / "files" / "probe").write_bytes(b"x" * 1000)
        (root / "www" / "dav").mkdir()
        (root / "body").mkdir()
        self.port = free_port()
        config = root / "nginx.conf"
        config.write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/body; fastcgi_temp_path {root}/body; uwsgi_temp_path {root}/body;
    scgi_temp_path {root}/body;
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        ssl_certificate {pem};
        ssl_certificate_key {key};
        root {root}/www;
        location /dav/ {{ dav_methods PUT; create_full_put_path on; client_max_body_size 0; }}
    }}
}}
""")
        self.process = subprocess.Popen([args.nginx_bin, "-c", str(config), "-e", str(root / "error.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        self.probe_path = "/files/probe"

    def upload(self, index: int):
        return "PUT", f"/dav/upload-{index}", [("content-length", "1000")]


def outcome(client) -> str:
    if client.goaway is not None:
        return f"GOAWAY {client.goaway:#x}"
    return "closed without GOAWAY" if client.closed or client.send_failed else "still open"


def measure(target: Target, attack: str) -> dict:
    with LatencyProbe(target.port, args_cafile, target.probe_path) as before:
        time.sleep(2.0)
    outcomes = collections.Counter()
    connections = units = 0
    lifetimes = []
    with LatencyProbe(target.port, args_cafile, target.probe_path) as probe:
        cpu_before = target.cpu()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            if attack == "hpack-bomb":
                client, sent = hpack_bomb_connection(target.port, args_cafile, target.probe_path, blocks=4)
            elif attack == "rapid-reset":
                client, sent = rapid_reset_connection(target.port, args_cafile, target.probe_path), 400
            else:
                client, sent = flood_connection(target.port, args_cafile, target.upload(connections), attack,
                                                seconds=max(0.5, deadline - time.monotonic()))
            lifetimes.append(time.monotonic() - started)
            client.close()
            outcomes[outcome(client)] += 1
            connections += 1
            units += sent
        cpu = target.cpu() - cpu_before
    return {
        "server": target.name, "attack": attack, "connections": connections,
        "units": units, "unit": {"hpack-bomb": "blocks", "rapid-reset": "resets"}.get(attack, "frames written"),
        "server_cpu_s": round(cpu, 3), "cpu_per_connection_ms": round(1000 * cpu / max(1, connections), 2),
        "cpu_share_of_one_core": round(cpu / args.seconds, 3),
        "median_connection_lifetime_s": round(sorted(lifetimes)[len(lifetimes) // 2], 3),
        "outcomes": dict(outcomes),
        "head_p50_before_ms": round(1000 * before.percentile(0.5), 1),
        "head_p99_before_ms": round(1000 * before.p99, 1),
        "head_p50_during_ms": round(1000 * probe.percentile(0.5), 1),
        "head_p99_during_ms": round(1000 * probe.p99, 1),
        "head_requests_during": len(probe.latencies), "head_timeouts_during": probe.timeouts,
    }


directory = pathlib.Path(tempfile.mkdtemp(prefix="h2-abuse-"))
make_ca(directory)
pem, key = make_leaf(directory, "leaf")
args_cafile = str(directory / "ca.pem")
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
targets = [Tus(directory, pem, key), Nginx(directory, pem, key)]
rows = []
try:
    for attack in args.attacks.split(","):
        for target in targets:
            row = measure(target, attack)
            print(json.dumps(row), flush=True)
            rows.append(row)
finally:
    for target in targets:
        target.stop()
    shutil.rmtree(directory, ignore_errors=True)
(out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
lines = ["| attack | server | attacking connections | server CPU per connection (ms) | server CPU, share of a core | "
         "median connection life (s) | how they ended | other client's HEAD p50 / p99 before (ms) | "
         "p50 / p99 during (ms) | HEAD timeouts |", "|" + "---|" * 10]
for row in rows:
    ended = ", ".join(f"{count} {how}" for how, count in row["outcomes"].items())
    lines.append(f"| {row['attack']} | {row['server']} | {row['connections']} | {row['cpu_per_connection_ms']} | "
                 f"{row['cpu_share_of_one_core']} | {row['median_connection_lifetime_s']} | {ended} | "
                 f"{row['head_p50_before_ms']} / {row['head_p99_before_ms']} | "
                 f"{row['head_p50_during_ms']} / {row['head_p99_during_ms']} | {row['head_timeouts_during']} |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
