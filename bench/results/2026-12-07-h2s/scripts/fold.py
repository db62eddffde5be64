#!/usr/bin/env python3
# perf script (call graphs) on stdin -> folded stacks "tid;root;...;leaf count" on stdout
import sys, re, collections
FRAME = re.compile(r"^\s*[0-9a-f]+\s+(?P<sym>.+?)\s+\((?P<dso>[^()]*)\)\s*$")
c = collections.Counter(); frames = []; tid = None
def flush():
    if frames and tid: c[";".join([tid] + list(reversed(frames)))] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); frames = []; tid = None; continue
    if not line.startswith((" ", "\t")):
        p = line.split(); tid = p[1] if len(p) > 1 else "?"; frames = []; continue
    m = FRAME.match(line)
    if not m: continue
    sym = re.sub(r"\+0x[0-9a-f]+$", "", m["sym"])
    if sym == "[unknown]": sym = "?" + m["dso"].rsplit("/", 1)[-1]
    frames.append(sym[:140])
flush()
for k, v in c.items(): print(k, v)
