"""Per-round server CPU per POST (us), ratios to tusd of the same round, and pairwise ratios of our builds in the same
round (the n-th row of a label is round n). Upload rows (scenario concurrent): server CPU per upload (us).
  python3 ratios.py results.jsonl SERVERS FILESYSTEMS PAIRS   e.g. base,lazy tmpfs,ext4j lazy/base,lazylog/baselog"""
import json, statistics, sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
uploads = defaultdict(list)
for r in rows:
    if r["label"].endswith("-warmup"):
        continue
    if r["scenario"] == "create":
        by[r["label"]].append(r["server_cpu_seconds"] / r["requests"] * 1e6 if r["requests"] and not r["errors"] else None)
    elif r["scenario"] == "concurrent":
        uploads[r["label"]].append(r["server_cpu_seconds"] / r["concurrency"] * 1e6 if not r["errors"] else None)
servers = sys.argv[2].split(",")
pairs = [p.split("/") for p in sys.argv[4].split(",")] if len(sys.argv) > 4 else []


def spread(values):
    values = [v for v in values if v]
    return f"**{statistics.median(values):.2f}** ({min(values):.2f}-{max(values):.2f})" if values else "-"


for fs in sys.argv[3].split(",") if by else []:
    for fsync in ("none", "commit"):
        tusd = by.get(f"tusd-post-{fs}", []) if fsync == "none" else []
        print(f"\n### {fs}, --fsync {fsync}: us per POST per round" + (" (ratio to tusd of that round)" if tusd else ""))
        print("\n| server | rounds | median us | median ratio to tusd (min-max) |\n|---|---|---|---|")
        if tusd:
            print(f"| tusd | {', '.join(f'{v:.1f}' for v in tusd)} | {statistics.median(tusd):.1f} | 1 |")
        for s in servers:
            vals = by.get(f"{s}-post-{fs}-fsync-{fsync}", [])
            if not vals:
                continue
            cells = ", ".join(f"{v:.1f}" + (f" ({v / t:.2f})" if t else "") for v, t in zip(vals, tusd or [None] * len(vals)))
            ratio = spread([v / t for v, t in zip(vals, tusd)]) if tusd else "-"
            print(f"| {s} | {cells} | {statistics.median(vals):.1f} | {ratio} |")
        for a, b in pairs:
            va, vb = by.get(f"{a}-post-{fs}-fsync-{fsync}", []), by.get(f"{b}-post-{fs}-fsync-{fsync}", [])
            if va and vb:
                rel = [x / y for x, y in zip(va, vb)]
                print(f"\n{a} / {b} per round: {', '.join(f'{x:.2f}' for x in rel)}; median {spread(rel)}")
if uploads:
    print("\n### uploads: server CPU per upload (us), POST + PATCH, per round\n")
    print("| label | rounds | median |\n|---|---|---|")
    for label, vals in sorted(uploads.items()):
        print(f"| {label} | {', '.join(f'{v:.0f}' for v in vals)} | {statistics.median(vals):.0f} |")
    for a, b in pairs:
        for label in sorted(uploads):
            if label.startswith(a + "-"):
                other = b + label[len(a):]
                if other in uploads:
                    rel = [x / y for x, y in zip(uploads[label], uploads[other])]
                    print(f"\n{label} / {other} per round: {', '.join(f'{x:.2f}' for x in rel)}; median {spread(rel)}")
