#!/usr/bin/env python3
# usage: med.py FILE -> per label: ticks per round, median, CPU s/GiB (512 MiB uploads, 100 Hz ticks)
import sys, statistics, collections
d = collections.defaultdict(list); t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) < 6 or not p[3].isdigit(): continue
    d[p[1] + "-" + p[2]].append(int(p[3])); t[p[1] + "-" + p[2]].append(float(p[6]))
for k, v in d.items():
    m = statistics.median(v)
    scale = 1 if "c32" in k else 2
    print(f"{k:28s} ticks {' '.join(map(str, v))}  median {m} -> {m/100*scale:.2f} s/GiB; wall median {statistics.median(t[k]):.2f} s")
