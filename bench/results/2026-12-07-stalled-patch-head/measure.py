"""How stale HEAD on another instance is while a PATCH on instance A stalls, and what resuming there at that offset
gets. 3 instances on one real redis-server and one directory (the interop cluster set-up). Per run: create a 3 MiB
upload on A, send 700 KiB of its PATCH body and stall; poll HEAD on B every 50 ms for up to 3 s; then PATCH 300 KiB
on C at the offset B last reported and record the status.

Usage: TUS_SERVER_BIN=... python measure.py RUNS [--splice on|off]"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "Tests" / "interop"))

from cluster_helpers import RedisServer  # noqa: E402
from test_cluster import start_slow_patch  # noqa: E402
from tus_helpers import TusServer, create_upload, head_offset, patch  # noqa: E402

KiB = 1024


def run_once(servers: list[TusServer]) -> tuple[float | None, int | None]:
    a, b, c = servers
    data = os.urandom(3 * 1024 * KiB)
    first = 700 * KiB
    path = create_upload(a.port, len(data))
    stalled = start_slow_patch(a, path, 0, len(data), data[:first])
    try:
        sent = time.monotonic()
        caught_up = None
        offset = 0
        while time.monotonic() - sent < 3:
            offset = head_offset(b.port, path)
            if offset == first:
                caught_up = time.monotonic() - sent
                break
            time.sleep(0.05)
        response = patch(c.port, path, offset, data[offset:offset + 300 * KiB])
        return caught_up, response.status if response else None
    finally:
        stalled.close()


def main() -> None:
    runs = int(sys.argv[1])
    splice = sys.argv[sys.argv.index("--splice") + 1] if "--splice" in sys.argv else "on"
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        redis = RedisServer(root / "redis").start()
        shared = root / "shared"
        shared.mkdir()
        servers = [TusServer(shared, "--redis", redis.url, "--redis-prefix", "m:", "--lock-lease", "2", "--loops", "2",
                             "--splice", splice, log_path=root / f"i{n}.log").start() for n in range(3)]
        try:
            for _ in range(runs):
                caught_up, status = run_once(servers)
                shown = "never (3 s)" if caught_up is None else f"{caught_up:.2f} s"
                print(f"splice={splice} head_on_B_caught_up={shown} resume_on_C_status={status}", flush=True)
        finally:
            for server in servers:
                server.stop(grace=5)
            redis.stop()


if __name__ == "__main__":
    main()
