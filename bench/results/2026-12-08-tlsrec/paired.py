#!/usr/bin/env python3
"""Paired rounds of bench/run-tls raw.jsonl: server CPU s/GiB of tus (this branch) and before (base) per round,
and the median of the per-round ratios. usage: paired.py RUN-DIR..."""
import json, statistics, sys
for run in sys.argv[1:]:
    rows = {}
    for line in open(f"{run}/raw.jsonl"):
        line = line.strip()
        if line.startswith("{"):
            row = json.loads(line)
            rows.setdefault(row["label"], []).append(row)
    for label in sorted(l for l in rows if l.startswith("tus-")):
        ours, base = rows[label], rows["before-" + label[4:]]
        ngx = rows.get("nginx-" + label[4:], [])
        ratios = [o["cpu_s_per_GiB"] / b["cpu_s_per_GiB"] for o, b in zip(ours, base)]
        fmt = lambda rs: " ".join(f"{r['cpu_s_per_GiB']:.2f}" for r in rs)
        print(f"{run} {label[4:]}: tus {fmt(ours)} | base {fmt(base)} | nginx {fmt(ngx)}")
        print(f"  tus/base per round {' '.join(f'{r:.3f}' for r in ratios)}  median {statistics.median(ratios):.3f}"
              f"; medians s/GiB: tus {statistics.median(r['cpu_s_per_GiB'] for r in ours):.2f}"
              f" base {statistics.median(r['cpu_s_per_GiB'] for r in base):.2f}"
              f" nginx {statistics.median(r['cpu_s_per_GiB'] for r in ngx):.2f}")
