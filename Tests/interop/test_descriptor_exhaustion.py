"""Running out of file descriptors must not lock the server up (issue 14 §1).

The server runs under `prlimit --nofile=256:256` with two loops; 600 clients connect at once, hold their
connections, then all reset them. Before the fix, both loop threads could end up calling accept4 in a tight
loop (EMFILE each time), never returning to epoll: the closes were never processed, CPU stayed at 200% after
every client was gone, requests timed out and SIGTERM was ignored. Here the server must calm down, serve a fresh
upload and stop on SIGTERM.
"""

from __future__ import annotations

import os
import pathlib
import resource
import socket
import struct
import time

import pytest

from tus_helpers import TusServer, create_upload, head_offset, patch

DESCRIPTOR_LIMIT = 256
CLIENTS = 600
ROUNDS = 3
HOLD_SECONDS = 3.0
SHUTDOWN_TIMEOUT = 3


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), from /proc/<pid>/stat."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, window: float = 1.0) -> float:
    """Fraction of one core the process used over `window` seconds (2.0 = two cores busy)."""
    before = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - before) / window


def flood(port: int) -> int:
    """Opens CLIENTS connections at once, holds them, then resets them all. Returns how many connected."""
    sockets = []
    try:
        for _ in range(CLIENTS):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.settimeout(5)
            try:
                client.connect(("127.0.0.1", port))
            except OSError:
                client.close()
                continue
            sockets.append(client)
        time.sleep(HOLD_SECONDS)
        return len(sockets)
    finally:
        for client in sockets:
            # SO_LINGER {on, 0}: close sends RST, as a crashed or killed client would.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()


def wait_until_quiet(pid: int, timeout: float) -> float:
    """Waits until the server uses less than a tenth of a core; returns the last measured share."""
    deadline = time.monotonic() + timeout
    share = cpu_share(pid)
    while share > 0.1 and time.monotonic() < deadline:
        share = cpu_share(pid)
    return share


@pytest.mark.time_limit(120)
def test_descriptor_exhaustion_does_not_lock_up(tmp_path: pathlib.Path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CLIENTS + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CLIENTS + 256), hard))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    # An explicit --max-connections far above what the limit holds: the default would fit the limit (503s
    # instead of running out of descriptors), and this test is about running out anyway.
    server = TusServer(
        uploads, "--loops", "2", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), "--max-connections", "10000",
        log_path=tmp_path / "server.log", launcher=("prlimit", f"--nofile={DESCRIPTOR_LIMIT}:{DESCRIPTOR_LIMIT}"),
    )
    # TusServer passes --loops 1 first; the later --loops 2 wins.
    server.start()
    try:
        for round_number in range(ROUNDS):
            connected = flood(server.port)
            assert connected > DESCRIPTOR_LIMIT, f"the flood must exceed the descriptor limit ({connected})"
            share = wait_until_quiet(server.pid, timeout=8)
            assert share <= 0.1, (
                f"round {round_number}: server still uses {share:.0%} of a core after every client left; "
                f"log:\n{server.log_text()[-2000:]}")

            data = os.urandom(10_000)
            path = create_upload(server.port, len(data))
            response = patch(server.port, path, 0, data)
            assert response is not None and response.status == 204, response
            assert head_offset(server.port, path) == len(data)

        log = server.log_text()
        episodes = log.count("too many open files")
        assert 1 <= episodes <= 10 * ROUNDS, (
            f"descriptor exhaustion is logged once per episode, not per accept ({episodes} lines); log:\n{log[-3000:]}")

        started = time.monotonic()
        code = server.stop(grace=SHUTDOWN_TIMEOUT + 5)
        assert code == 0, f"SIGTERM ends the server cleanly (exit {code}); log:\n{server.log_text()[-2000:]}"
        assert time.monotonic() - started < SHUTDOWN_TIMEOUT + 2
    finally:
        server.stop(grace=2)


def test_descriptor_limit_below_max_connections_is_warned_at_start(tmp_path: pathlib.Path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    launcher = ("prlimit", f"--nofile={DESCRIPTOR_LIMIT}:{DESCRIPTOR_LIMIT}")
    low = TusServer(
        uploads, "--max-connections", "10000", log_path=tmp_path / "low.log", launcher=launcher).start()
    try:
        assert low.stop(grace=5) == 0
        warnings = [line for line in low.log_text().splitlines() if "--max-connections" in line]
        assert len(warnings) == 1, f"one warning line at start; log:\n{low.log_text()}"
        assert str(DESCRIPTOR_LIMIT) in warnings[0]
    finally:
        low.stop(grace=2)
    enough = TusServer(uploads, "--max-connections", "50", log_path=tmp_path / "enough.log", launcher=launcher).start()
    try:
        assert enough.stop(grace=5) == 0
        assert "--max-connections" not in enough.log_text(), "no warning when the limit suffices"
    finally:
        enough.stop(grace=2)


def test_default_max_connections_fits_the_descriptor_limit(tmp_path: pathlib.Path):
    """Without --max-connections the server sizes the limit from the descriptors it has (after raising the soft
    limit to the hard one), so a default start never warns: before, every default start on a machine with a hard
    limit of 20,000 warned that 10,000 connections can need 20,080."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    # Soft 64, hard 256: the server must raise the soft limit itself, then fit 2 per connection + 8 + 64.
    server = TusServer(
        uploads, log_path=tmp_path / "server.log",
        launcher=("prlimit", f"--nofile=64:{DESCRIPTOR_LIMIT}")).start()
    try:
        with open(f"/proc/{server.pid}/limits") as limits:
            soft = next(line for line in limits if line.startswith("Max open files")).split()[3]
        assert int(soft) == DESCRIPTOR_LIMIT, "the soft limit is raised to the hard one"
        assert server.stop(grace=5) == 0
        log = server.log_text()
        assert "open file limit" not in log, f"no warning with the default; log:\n{log}"
        expected = (DESCRIPTOR_LIMIT - 8 - 64) // 2
        assert f"max-connections={expected}" in log, f"the chosen limit is logged; log:\n{log}"
    finally:
        server.stop(grace=2)
