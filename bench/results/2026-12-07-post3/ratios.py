"""Per-round server CPU per POST (us) and ratios to tusd of the same round; the n-th row of a label is round n."""
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
for r in rows:
    if r["label"].endswith("-warmup") or r["scenario"] != "create":
        continue
    us = r["server_cpu_seconds"] / r["requests"] * 1e6 if r["requests"] and r["errors"] == 0 else None
    by[r["label"]].append(us)
servers = sys.argv[2].split(",")
for fs in sys.argv[3].split(","):
    tusd = by.get(f"tusd-post-{fs}", [])
    print(f"\n### {fs}, --fsync none: us per POST per round (ratio to tusd of that round)\n")
    print("| server | rounds | median us | median ratio to tusd (min-max) |")
    print("|---|---|---|---|")
    print(f"| tusd | {', '.join(f'{v:.1f}' for v in tusd)} | {statistics.median(tusd):.1f} | 1 |")
    for s in servers:
        vals = by.get(f"{s}-post-{fs}-fsync-none", [])
        ratios = [v / t for v, t in zip(vals, tusd) if v and t]
        print(f"| {s} | {', '.join(f'{v:.1f} ({v/t:.2f})' for v, t in zip(vals, tusd))} | "
              f"{statistics.median(vals):.1f} | **{statistics.median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) |")
    base = by.get(f"{servers[0]}-post-{fs}-fsync-none", [])
    for s in servers[1:]:
        vals = by.get(f"{s}-post-{fs}-fsync-none", [])
        rel = [v / b for v, b in zip(vals, base)]
        print(f"\n{s} / {servers[0]} per round: {', '.join(f'{x:.2f}' for x in rel)}; median {statistics.median(rel):.2f}")
    print(f"\n--fsync commit, us per POST (median): " + ", ".join(
        f"{s} {statistics.median(by[f'{s}-post-{fs}-fsync-commit']):.1f}" for s in servers if by.get(f'{s}-post-{fs}-fsync-commit')))
