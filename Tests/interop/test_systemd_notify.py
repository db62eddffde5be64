"""sd_notify readiness for the packaged unit's Type=notify: with $NOTIFY_SOCKET set, as systemd sets it, the server
sends READY=1 once it listens (not before the start-up line, which is printed once every loop listens) and
STOPPING=1 when a signal stops it. Both a path and an abstract ("@name") socket, since systemd uses either."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest

from tus_helpers import TusServer, request


def receive(sock: socket.socket) -> dict[str, str]:
    datagram = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in datagram.splitlines() if line)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_after_listening_and_stopping_on_sigterm(tmp_path: pathlib.Path, monkeypatch, abstract: bool):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"tus-notify-test-{os.getpid()}-{tmp_path.name}"
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        path = tmp_path / "notify.sock"
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    listener.settimeout(10)
    (tmp_path / "uploads").mkdir()
    server = TusServer(tmp_path / "uploads", log_path=tmp_path / "server.log").start()
    try:
        ready = receive(listener)
        assert ready.get("READY") == "1", ready
        assert ready.get("STATUS", "").endswith(f":{server.port}/files/"), ready
        response = request(server.port, "OPTIONS", "/files/")
        assert response is not None and response.status == 204, "serving when READY=1 arrives"
        os.kill(server.pid, 15)
        assert receive(listener) == {"STOPPING": "1"}
        assert server.stop(grace=10) == 0
    finally:
        server.stop(grace=2)
        listener.close()


def test_no_socket_no_notification(tmp_path: pathlib.Path, monkeypatch):
    """A NOTIFY_SOCKET nobody listens on (a stale variable) must not stop the server from serving."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    (tmp_path / "uploads").mkdir()
    server = TusServer(tmp_path / "uploads", log_path=tmp_path / "server.log").start()
    try:
        response = request(server.port, "OPTIONS", "/files/")
        assert response is not None and response.status == 204
        assert server.stop(grace=10) == 0
    finally:
        server.stop(grace=2)
