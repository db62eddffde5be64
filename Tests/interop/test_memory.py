"""Issue 19: the memory settings tus-server makes at start-up hold in the running binary. Measuring RssAnon here would
be noise (bench/run-memory measures it against tusd); what is checked is the configuration itself, from
/proc/PID/maps, which is deterministic."""

from __future__ import annotations

import os
import pathlib

from tus_helpers import create_upload, patch

# glibc's HEAP_MAX_SIZE on 64-bit: each arena other than the main one is a heap of this size, aligned to it,
# read-write at its start and PROT_NONE for the rest.
ARENA_HEAP_BYTES = 64 << 20


def anonymous_mappings(pid: int) -> list[tuple[int, int, str]]:
    mappings = []
    for line in pathlib.Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5:  # no path: anonymous
            start, end = (int(value, 16) for value in fields[0].split("-"))
            mappings.append((start, end, fields[1]))
    return mappings


def malloc_arena_heaps(pid: int) -> list[int]:
    """Start addresses of glibc arena heaps: a read-write mapping on a 64 MiB boundary, followed by PROT_NONE up to
    the next boundary. Thread stacks (8 MiB, PROT_NONE guard first) and mmapped chunks do not have that shape."""
    mappings = anonymous_mappings(pid)
    heaps = []
    for index, (start, end, permissions) in enumerate(mappings):
        if start % ARENA_HEAP_BYTES or not permissions.startswith("rw"):
            continue
        covered = end
        for next_start, next_end, next_permissions in mappings[index + 1:]:
            if next_start != covered or next_permissions != "---p" or next_end > start + ARENA_HEAP_BYTES:
                break
            covered = next_end
        if covered == start + ARENA_HEAP_BYTES:
            heaps.append(start)
    return heaps


def test_threads_share_one_malloc_arena(server_factory):
    # Two loops and the threadpool (started by the first file write) all malloc during an upload; glibc's default
    # would give each of them an arena of its own, and each arena keeps the pages it touched.
    server = server_factory("--loops", "2")
    for _ in range(4):  # connections land on both loops
        data = os.urandom(3 << 20)
        path = create_upload(server.port, len(data))
        response = patch(server.port, path, 0, data)
        assert response is not None and response.status == 204, response
    assert malloc_arena_heaps(server.pid) == [], pathlib.Path(f"/proc/{server.pid}/maps").read_text()
