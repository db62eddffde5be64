#!/usr/bin/env python3
# usage: cmp.py A.data B.data ... -> sample counts per (dso, symbol), side by side, top N by max
import subprocess, sys, collections, re
files = sys.argv[1:]
N = 45
tables = []
totals = []
for f in files:
    out = subprocess.run(["perf", "report", "-i", f, "--no-children", "--sort", "dso,sym", "--stdio", "-F", "sample,dso,sym"],
                         capture_output=True, text=True).stdout
    t = collections.Counter()
    for line in out.splitlines():
        if line.startswith("#") or not line.strip(): continue
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[.\]\s+(.*)", line)
        if not m: continue
        n, dso, sym = int(m[1]), m[2], m[3].strip()
        if sym.startswith("0x"): sym = "0x?"
        sym = sym[:60]
        t[(dso[:22], sym)] += n
    tables.append(t); totals.append(sum(t.values()))
keys = set().union(*tables)
keys = sorted(keys, key=lambda k: -max(t[k] for t in tables))[:N]
print("%-22s %-60s " % ("dso", "sym") + " ".join("%8s" % f.split("/")[-1][:8] for f in files))
for k in keys:
    print("%-22s %-60s " % k + " ".join("%8d" % t[k] for t in tables))
print("%-83s " % "TOTAL" + " ".join("%8d" % x for x in totals))
# by dso
d = [collections.Counter() for _ in tables]
for i, t in enumerate(tables):
    for (dso, sym), n in t.items(): d[i][dso] += n
for dso in sorted(set().union(*d), key=lambda x: -max(c[x] for c in d))[:10]:
    print("%-83s " % dso + " ".join("%8d" % c[dso] for c in d))
