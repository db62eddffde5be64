"""summary.md for bench/run-creation: medians over rounds and ratios against nginx and tusd of the same run.

usage: python3 bench/creation_summary.py results.jsonl DISK_NAME SERVER_NAME...
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
disk = sys.argv[2]
servers = sys.argv[3:]
samples = defaultdict(list)
for row in rows:
    if row["label"].endswith("-warmup"):
        continue
    samples[row["label"]].append(row)


def median(label, key):
    values = [key(r) for r in samples.get(label, []) if r["errors"] == 0 and key(r) is not None]
    return statistics.median(values) if values else None


def mbps(label):
    return median(label, lambda r: r["MBps"])


def cpu_per_gib(label):
    return median(label, lambda r: r["server_cpu_seconds"] / (r["MBps"] * 1e6 * r["wall_seconds"] / 2**30)
                  if r.get("server_cpu_seconds") is not None and r["MBps"] else None)


def us_per_post(label):
    return median(label, lambda r: r["server_cpu_seconds"] / r["requests"] * 1e6
                  if r["server_cpu_seconds"] is not None and r["requests"] else None)


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def runs(label, key):
    return ", ".join(fmt(key(r), 1) for r in samples.get(label, []))


print("# Concurrent uploads (tus-server --fsync none), medians over rounds\n")
print("| scenario | server | MB/s (median) | MB/s per round | server CPU s/GiB | vs nginx (best of w1, w2) | vs tusd |")
print("|---|---|---|---|---|---|---|")
titles = (("single", "1 upload"), ("c32", "32 at once"), ("c256", "256 x 8 MiB"), ("c1024", "1024 x 2 MiB"))
for scenario, title in titles:
    nginx = max((v for v in (mbps(f"nginx-w1-{scenario}"), mbps(f"nginx-w2-{scenario}")) if v), default=None)
    tusd = mbps(f"tusd-{scenario}")
    # tus-bench rows, then --durable's (--fsync commit, dd) and --python's rows (-py: ratios against -py peers)
    names = [f"{name}-{scenario}" for name in servers + ["nginx-w1", "nginx-w2", "tusd"]]
    names += [f"{name}-{scenario}-fsync-commit" for name in servers] + [f"dd-fdatasync-{scenario}"]
    names += [f"{name}-{scenario}-py" for name in servers + ["nginx-w1", "nginx-w2", "tusd"]]
    for label in names:
        if label not in samples:
            continue
        if label.endswith("-py"):
            nginx = max((v for v in (mbps(f"nginx-w1-{scenario}-py"), mbps(f"nginx-w2-{scenario}-py")) if v),
                        default=None)
            tusd = mbps(f"tusd-{scenario}-py")
        value = mbps(label)
        print(f"| {title} | {label} | {fmt(value, 1)} | {runs(label, lambda r: r['MBps'])} | "
              f"{fmt(cpu_per_gib(label))} | {fmt(ratio(value, nginx))} | {fmt(ratio(value, tusd))} |")

print("\n# Creation (POST, 32 connections): server CPU per request, medians over rounds\n")
print("| file system | server | fsync | us per POST | POST/s | vs tusd's us per POST (target <= 0.33 with none) |")
print("|---|---|---|---|---|---|")
for fs in (disk, "tmpfs"):
    tusd = us_per_post(f"tusd-post-{fs}")
    if tusd is not None:
        rps = median(f"tusd-post-{fs}", lambda r: r["requests_per_second"])
        print(f"| {fs} | tusd | - | {fmt(tusd, 1)} | {fmt(rps, 0)} | 1.00 |")
    for name in servers:
        for fsync in ("none", "commit"):
            label = f"{name}-post-{fs}-fsync-{fsync}"
            if label not in samples:
                continue
            value = us_per_post(label)
            rps = median(label, lambda r: r["requests_per_second"])
            print(f"| {fs} | {name} | {fsync} | {fmt(value, 1)} | {fmt(rps, 0)} | {fmt(ratio(value, tusd))} |")
