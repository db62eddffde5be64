import json,statistics,sys,collections
path=sys.argv[1]; base=sys.argv[2] if len(sys.argv)>2 else 'none-main'
rows=[json.loads(l) for l in open(path)]
by=collections.defaultdict(list)
for r in rows: by[r['label']].append(r)
n=min(len(v) for v in by.values())
print(f"rounds: {n}; base {base}")
print("| config | median MB/s (of per-round medians) | median ratio to base (per round) | min-max ratio | server CPU s per GiB | errors |")
print("|---|---|---|---|---|---|")
for label,v in by.items():
    ratios=[v[i]['MBps']/by[base][i]['MBps'] for i in range(min(len(v),len(by[base])))]
    cpu=[r['server_cpu_seconds']/(r['bytes']*r['concurrency']*r['runs']/2**30) for r in v if r['server_cpu_seconds'] is not None]
    print(f"| {label} | {statistics.median(r['MBps'] for r in v):.0f} | {statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} | {statistics.median(cpu):.3f} | {sum(r['errors'] for r in v)} |")
print()
print("pooled runs:")
print("| config | runs | median MB/s | ratio of medians to base | p25-p75 MB/s |")
print("|---|---|---|---|---|")
def allruns(v): return [x for r in v for x in (r.get('MBps_all_runs') or [r['MBps']])]
bm=statistics.median(allruns(by[base]))
for label,v in by.items():
    a=sorted(allruns(v)); q=statistics.quantiles(a,n=4)
    print(f"| {label} | {len(a)} | {statistics.median(a):.0f} | {statistics.median(a)/bm:.2f} | {q[0]:.0f}-{q[2]:.0f} |")
