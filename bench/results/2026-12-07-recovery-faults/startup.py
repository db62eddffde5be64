"""Time from exec to the 'listening on' line with N upload records in --upload-dir (recovery's cost), old vs new."""
import json, os, pathlib, subprocess, sys, time, shutil
N = int(sys.argv[1]); binaries = sys.argv[2:]
root = pathlib.Path("/tmp/enospc-bench/dir")
def populate():
    if root.exists(): shutil.rmtree(root)
    root.mkdir()
    for i in range(N):
        uid = f"{i:032x}"
        (root / uid).write_bytes(b"x" * 100)
        # record offset behind the data: every record is rewritten by recovery on the first start
        (root / f"{uid}.info").write_text(json.dumps({"id": uid, "length": 1000, "offset": 10, "metadata": None,
            "createdAt": 1, "expiresAt": None, "pendingDiscardFrom": None}))
def start(binary):
    t = time.monotonic()
    p = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--upload-dir", str(root), "--loops", "1",
                          "--fsync", "commit"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith("listening on"): break
    elapsed = time.monotonic() - t
    p.terminate(); p.wait(timeout=10)
    return elapsed
for round_ in range(3):
    for binary in binaries:
        populate(); first = start(binary); again = start(binary)
        print(f"round={round_} bin={binary} rewrite-all={first*1000:.0f}ms clean={again*1000:.0f}ms", flush=True)
