"""What clients see while Redis fails over (Sentinel or Redis Cluster): uploads that stream chunk by chunk over
several instances, resume from HEAD after a retry status, and record every status with its time, every offset a
204 acknowledged and any HEAD that reports less than that."""

from __future__ import annotations

import os
import threading
import time

from tus_helpers import TusServer, create_upload, patch, request

KiB = 1024
MiB = 1024 * KiB
# What a client may see while there is no master (or the replica is not acknowledging): try again later.
RETRY_STATUSES = {503, 423, 409}


class Observations:
    """What every client saw, with the time it saw it (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.responses: list[tuple[float, str, int]] = []  # (monotonic time, method, status)
        self.paths: list[str] = []  # the upload of each response, in the same order
        self.lost: list[str] = []  # an offset reported below one acknowledged before
        self.acknowledged: dict[str, int] = {}  # the last offset a 204 gave each upload
        self.unexpected: list[str] = []

    def saw(self, method: str, status: int, path: str = "") -> None:
        with self.lock:
            self.responses.append((time.monotonic(), method, status))
            self.paths.append(path)

    def failover_seconds(self, killed_at: float, method: str | None = None,
                         paths: set[str] | None = None) -> float | None:
        """First 503 after the kill to the first success (of `method`, or any) after it, across every client (or
        the clients of `paths`)."""
        with self.lock:
            after = sorted(r for r, p in zip(self.responses, self.paths)
                           if r[0] >= killed_at and (paths is None or p in paths))
        first_503 = next((t for t, _, status in after if status == 503), None)
        if first_503 is None:
            return None
        first_ok = next((t for t, m, status in after
                         if t > first_503 and 200 <= status < 300 and method in (None, m)), None)
        return None if first_ok is None else first_ok - first_503


def upload(servers: list[TusServer], path: str, data: bytes, chunk: int, pace: float, turn: int,
           seen: Observations, deadline: float) -> None:
    """PATCHes `data` in `chunk`s, each to the next instance; on a retry status or a dropped connection, waits and
    resumes from the offset HEAD reports, which must never be below the last offset a 204 acknowledged."""
    acknowledged = offset = 0

    def resume() -> int:
        nonlocal turn
        while time.monotonic() < deadline:
            turn += 1
            response = request(servers[turn % len(servers)].port, "HEAD", path)
            if response is None:
                time.sleep(0.1)
                continue
            seen.saw("HEAD", response.status, path)
            if response.status == 200:
                reported = int(response.header("Upload-Offset"))
                if reported < acknowledged:
                    with seen.lock:
                        seen.lost.append(f"{path}: HEAD {reported} after 204 at {acknowledged}")
                return reported
            if response.status not in RETRY_STATUSES:
                with seen.lock:
                    seen.unexpected.append(f"HEAD {path}: {response.status}")
                return -1
            time.sleep(0.1)
        return -1

    while offset < len(data) and time.monotonic() < deadline:
        turn += 1
        response = patch(servers[turn % len(servers)].port, path, offset, data[offset:offset + chunk])
        if response is not None:
            seen.saw("PATCH", response.status, path)
        if response is not None and response.status == 204:
            acknowledged = offset = int(response.header("Upload-Offset"))
            with seen.lock:
                seen.acknowledged[path] = acknowledged
            time.sleep(pace)
            continue
        if response is not None and response.status not in RETRY_STATUSES:
            with seen.lock:
                seen.unexpected.append(f"PATCH {path} at {offset}: {response.status} {response.body[:200]!r}")
            return
        time.sleep(0.1)
        offset = resume()
        if offset < 0:
            return


def check_final_offsets(servers: list[TusServer], seen: Observations) -> None:
    """An upload acknowledged to its end is never HEADed by its client again: compare its offset now."""
    for path, acknowledged in seen.acknowledged.items():
        response = request(servers[0].port, "HEAD", path)
        assert response is not None and response.status == 200, (path, response)
        if int(response.header("Upload-Offset")) < acknowledged:
            seen.lost.append(f"{path}: HEAD {response.header('Upload-Offset')} at the end after 204 at {acknowledged}")


def stream_uploads(servers: list[TusServer], count: int, size: int, chunk: int, pace: float, seen: Observations,
                   deadline: float, paths: list[str] | None = None
                   ) -> tuple[list[tuple[str, bytes]], list[threading.Thread]]:
    """`count` uploads of `size` bytes created and streamed (or the given `paths`, created with that length), each
    by a thread of its own; the threads end when their upload is complete or at `deadline`."""
    if paths is None:
        paths = [create_upload(servers[i % len(servers)].port, size) for i in range(count)]
    uploads = [(path, os.urandom(size)) for path in paths]
    threads = [threading.Thread(target=upload, args=(servers, path, data, chunk, pace, i, seen, deadline))
               for i, (path, data) in enumerate(uploads)]
    for thread in threads:
        thread.start()
    return uploads, threads
