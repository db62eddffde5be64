#!/usr/bin/env python3
# usage: buckets.py FOLDED TID -> loop-thread samples by what they were doing (first matching rule, outermost first)
import collections, sys
RULES = [  # (bucket, substring of a frame); the first rule with a matching frame decides
    ("epoll_wait (sleep/wake)", "epoll_wait"),
    ("flushOutput (WINDOW_UPDATE etc)", "flushOutput"),
    ("nghttp2 mem_recv + callbacks", "nghttp2_session_mem_recv"),
    ("SSL_read: AES", "?libcrypto"),
    ("SSL_read: memcpy", "memmove"),
    ("SSL_read: other", "readPlaintext"),
    ("file-write completion chain", "batchWritten"),
    ("fragmentDone/settle", "fragmentDone"),
    ("write completion -> perform", "SecureStream.write"),
    ("deadline sweep", "checkDeadline"),
    ("socket read(2)", "__GI___libc_read"),
    ("HTTPConnection.process", "HTTPConnection.process"),
    ("allocatePlaintextBuffer", "allocatePlaintextBuffer"),
    ("didFinishRead", "didFinishRead"),
    ("didReceivePlaintext other", "didReceivePlaintext"),
    ("SecureStream.decrypt other", "SecureStream.decrypt"),
    ("uv write/async", "uv__async"),
]
tid = sys.argv[2]; c = collections.Counter(); total = 0; other = collections.Counter()
for line in open(sys.argv[1]):
    s, n = line.rsplit(" ", 1); fr = s.split(";"); n = int(n)
    if fr[0] != tid: continue
    total += n
    hit = next((b for b, p in RULES if any(p in f for f in fr)), None)
    if not hit:
        hit = "other"; other[";".join(fr[-3:])[:200]] += n
    c[hit] += n
print("total", total)
for k, v in c.most_common(): print(f"{v:6d} {100*v/total:5.1f}%  {k}")
if len(sys.argv) > 3:
    for k, v in other.most_common(15): print("   other:", v, k)
