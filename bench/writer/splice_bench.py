#!/usr/bin/env python3
"""socket -> file: recv_into + pwrite (what the server does, minus the threadpool hop) vs splice(2)
socket -> pipe -> file (zero copy). A sender thread pushes N bytes over loopback from one reusable buffer.
Python's per-call overhead is small next to 256 KiB+ calls; both sides pay it equally.
Usage: splice_bench.py --dir DIR [--bytes N] [--chunks 65536,262144,1048576] [--repeat 3]"""
import argparse, json, os, socket, statistics, threading, time

def sender(port, total, buf):
    s = socket.create_connection(("127.0.0.1", port))
    view, sent = memoryview(buf), 0
    while sent < total:
        n = min(len(buf), total - sent)
        s.sendall(view[:n]); sent += n
    s.close()

def receive(mode, path, total, chunk):
    lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
    buf = os.urandom(1 << 20)
    t = threading.Thread(target=sender, args=(lst.getsockname()[1], total, buf)); t.start()
    conn, _ = lst.accept(); lst.close()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start, got = time.monotonic(), 0
    if mode == "recv+pwrite":
        rbuf = bytearray(chunk); view = memoryview(rbuf)
        while got < total:
            n = conn.recv_into(view, chunk)
            if n == 0: break
            os.pwrite(fd, view[:n], got); got += n
    else:
        r, w = os.pipe()
        import fcntl
        fcntl.fcntl(w, 1031, chunk)  # F_SETPIPE_SZ so one splice can move a whole chunk
        while got < total:
            n = os.splice(conn.fileno(), w, chunk)
            if n == 0: break
            moved = 0
            while moved < n:
                moved += os.splice(r, fd, n - moved, offset_dst=got + moved)
            got += n
        os.close(r); os.close(w)
    elapsed = time.monotonic() - start
    os.close(fd); conn.close(); t.join(); os.unlink(path)
    assert got == total, (got, total)
    return elapsed

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default="/tmp"); p.add_argument("--bytes", type=int, default=1 << 30)
    p.add_argument("--chunks", default="65536,262144,1048576"); p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    for chunk in map(int, a.chunks.split(",")):
        for mode in ("recv+pwrite", "splice"):
            times, cpu = [], []
            for _ in range(a.repeat):
                c0 = time.process_time()
                times.append(receive(mode, os.path.join(a.dir, f"splice-bench-{os.getpid()}"), a.bytes, chunk))
                cpu.append(time.process_time() - c0)
            med = statistics.median(times)
            print(json.dumps({"mode": mode, "chunk": chunk, "bytes": a.bytes, "median_seconds": round(med, 4),
                              "MBps": round(a.bytes / med / 1e6, 1),
                              "process_cpu_seconds_incl_sender": round(statistics.median(cpu), 3)}), flush=True)

if __name__ == "__main__":
    main()
