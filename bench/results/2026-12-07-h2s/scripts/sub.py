#!/usr/bin/env python3
# usage: sub.py FOLDED TID PATTERN [DEPTH] -> what the frames under the first frame matching PATTERN cost (samples)
import collections, sys
pat = sys.argv[3]; depth = int(sys.argv[4]) if len(sys.argv) > 4 else 1; tid = sys.argv[2]
c = collections.Counter(); total = 0
for line in open(sys.argv[1]):
    s, n = line.rsplit(" ", 1); fr = s.split(";")
    if tid != "*" and fr[0] != tid: continue
    idx = [i for i, f in enumerate(fr) if pat in f]
    if not idx: continue
    i = idx[0]; total += int(n)
    c[";".join(fr[i + 1:i + 1 + depth]) or "<self>"] += int(n)
print("total", total)
for k, v in c.most_common(int(sys.argv[5]) if len(sys.argv) > 5 else 25): print(f"{v:6d} {k[:250]}")
