import json, statistics, sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
labels=list(dict.fromkeys(r["label"] for r in rows))
print("| row | CPU s/GiB min | median | max | MB/s min | median | max | n |")
print("|---|---|---|---|---|---|---|---|")
for lab in labels:
    rs=[r for r in rows if r["label"]==lab and r["errors"]==0]
    c=[r["cpu_s_per_GiB"] for r in rs]; m=[r["MBps"] for r in rs]
    print(f"| {lab} | {min(c):.2f} | {statistics.median(c):.2f} | {max(c):.2f} | {min(m):.0f} | {statistics.median(m):.0f} | {max(m):.0f} | {len(rs)} |")
