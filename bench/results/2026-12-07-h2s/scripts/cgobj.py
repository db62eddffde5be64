#!/usr/bin/env python3
# usage: cgobj.py TAG_BIG TAG_SMALL MiBdiff -> per object (and top functions) k instructions per MiB, big minus small
import subprocess, sys, glob, re, collections
def load(tag):
    per_obj = collections.Counter(); per_fn = collections.Counter()
    for f in glob.glob(f"/tmp/h2s/cg-{tag}.*"):
        out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", f], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*?):(.*) \[(.*)\]\s*$", line)
            if not m:
                m2 = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*?):(.*)$", line)
                if not m2: continue
                n = int(m2[1].replace(",", "")); obj = "?"; fn = m2[3]
            else:
                n = int(m[1].replace(",", "")); obj = m[4].split("/")[-1]; fn = m[3]
            per_obj[obj] += n; per_fn[(obj, fn[:70])] += n
    return per_obj, per_fn
big, small, mib = sys.argv[1], sys.argv[2], float(sys.argv[3])
bo, bf = load(big); so, sf = load(small)
print("object k-instr/MiB")
for k in sorted(bo, key=lambda k: -(bo[k]-so[k])):
    v = (bo[k]-so[k])/mib/1000
    if abs(v) > 2: print(f"  {k:40s} {v:8.0f}")
print("functions")
for k in sorted(bf, key=lambda k: -(bf[k]-sf[k]))[:int(sys.argv[4]) if len(sys.argv)>4 else 40]:
    v = (bf[k]-sf[k])/mib/1000
    print(f"  {v:8.1f} {k[0][:20]:20s} {k[1]}")
