"""Hostile or broken input gets a 4xx or a closed connection, never a dead server: after each case a normal
upload still works."""

from __future__ import annotations

import os

import pytest

from tus_helpers import RawConnection, TusServer, create_upload, head_offset, patch, wait_until


def assert_still_serving(server: TusServer) -> None:
    data = os.urandom(100_000)
    path = create_upload(server.port, len(data))
    response = patch(server.port, path, 0, data)
    assert response is not None and response.status == 204
    assert head_offset(server.port, path) == len(data)
    assert server.data_file(path).read_bytes() == data


def rejected_or_closed(connection: RawConnection, allowed: tuple[int, ...]) -> None:
    response = connection.read_response()
    if response is not None:
        assert response.status in allowed, response


CASES = {
    "junk bytes": os.urandom(4096).replace(b"\r\n\r\n", b"xxxx") + b"\r\n\r\n",
    "binary request line": b"\x00\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n",
    "not http": b"HELLO WORLD\r\n\r\n",
    "256 KiB header": b"HEAD /files/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (256 * 1024) + b"\r\n\r\n",
    "many headers": b"HEAD /files/ HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(5000)) + b"\r\n",
    "CL and TE": (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"),
    "two content lengths": (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n"
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    "bad chunk size": (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n"
        b"Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    "negative content length": b"POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "obs-fold header": b"HEAD /files/ HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_is_rejected_and_server_keeps_serving(server: TusServer, name: str):
    before = len(server.info_files())
    with RawConnection(server.port) as connection:
        connection.send(CASES[name])
        rejected_or_closed(connection, (400, 413, 431, 501, 505))
    if name == "CL and TE":
        assert len(server.info_files()) == before, "an ambiguous body must not create an upload"
    assert_still_serving(server)


def test_client_vanishing_mid_body_and_mid_head(server: TusServer):
    path = create_upload(server.port, 1_000_000)
    with RawConnection(server.port) as connection:
        connection.send(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream\r\nContent-Length: 1000000\r\n\r\n".encode() + b"a" * 5000)
    with RawConnection(server.port) as connection:
        connection.send(b"PATCH /files/x HTTP/1.1\r\nHost: ")

    def kept() -> bool:
        return head_offset(server.port, path) == 5000
    wait_until(kept, timeout=10, message="bytes of the abandoned PATCH are kept (C22)")
    assert_still_serving(server)


def test_pipelined_requests_on_one_connection(server: TusServer):
    path = create_upload(server.port, 10)
    head = f"HEAD {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n".encode()
    with RawConnection(server.port) as connection:
        connection.send(head * 3)
        for _ in range(3):
            response = connection.read_response(for_head=True)
            assert response is not None and response.status == 200
            assert response.header("Upload-Offset") == "0"
