"""Clients that stop reading must not hold server resources forever."""

from __future__ import annotations

import os
import socket
import time

from tus_helpers import OFFSET_STREAM, create_upload, request

MiB = 1024 * 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_download_to_a_client_that_never_reads_is_cut_after_the_body_timeout(server_factory):
    """Regression: a response write had no deadline, so a GET whose client stopped reading kept the connection,
    its read chunk and its open file forever."""
    server = server_factory("--body-timeout", "1")
    path = create_upload(server.port, 8 * MiB)
    response = request(server.port, "PATCH", path, {"Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
                       os.urandom(8 * MiB))
    assert response is not None and response.status == 204
    time.sleep(0.2)
    baseline = open_fds(server.pid)
    stalled = []
    for _ in range(5):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stalled.append(sock)
    time.sleep(0.5)
    assert open_fds(server.pid) >= baseline + 5, "each stalled download holds a socket (and a file) meanwhile"
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and open_fds(server.pid) > baseline:
        time.sleep(0.2)
    assert open_fds(server.pid) <= baseline, "stalled downloads should be closed after --body-timeout"
    for sock in stalled:
        sock.close()
    assert request(server.port, "OPTIONS", "/files/").status == 204
