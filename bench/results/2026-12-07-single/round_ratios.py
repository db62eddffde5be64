"""Per-round ratios against nginx for the single-upload rows of a results.jsonl (bench/run-creation or ab.sh).

usage: python3 round_ratios.py results.jsonl NGINX_LABEL
The k-th sample of every label belongs to round k (each round runs every server once, in a rotated order).
Prints, per label: MB/s min/median/max, the ratio of medians to nginx's, the ratio to nginx per round
(min/median/max), server CPU s/GiB (median).
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
nginx_label = sys.argv[2]
by = defaultdict(list)
for row in rows:
    if row.get("errors", 0) == 0 and not row["label"].endswith("-warmup"):
        by[row["label"]].append(row)
nginx = [r["MBps"] for r in by[nginx_label]]
print("| label | rounds | MB/s min / median / max | median / nginx's median | ratio to nginx per round: min / median / max "
      "| server CPU s/GiB |")
print("|---|---|---|---|---|---|")
for label, samples in by.items():
    mbps = [r["MBps"] for r in samples]
    ratios = [a / b for a, b in zip(mbps, nginx)]
    cpu = [r["server_cpu_seconds"] / (r["bytes"] * r.get("concurrency", 1) / 2**30)
           for r in samples if r.get("server_cpu_seconds") is not None]
    print(f"| {label} | {len(mbps)} | {min(mbps):.0f} / {statistics.median(mbps):.0f} / {max(mbps):.0f} | "
          f"{statistics.median(mbps) / statistics.median(nginx):.2f} | "
          f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f} | "
          + (f"{statistics.median(cpu):.2f} |" if cpu else "- |"))
