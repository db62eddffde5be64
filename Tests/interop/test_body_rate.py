"""--min-body-rate end to end: a PATCH trickling below the rate is cut and keeps its bytes; a PATCH that is slow
but above the rate completes (issue 14 §4). The averaging window is the body timeout, 2 s here."""

from __future__ import annotations

import time

import pytest

from tus_helpers import OFFSET_STREAM, RawConnection, create_upload, head_offset, wait_until

RATE_ARGS = ("--body-timeout", "2", "--min-body-rate", "1000")


def patch_head(path: str, length: int) -> bytes:
    return (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        f"Content-Type: {OFFSET_STREAM}\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.mark.time_limit(30)
def test_trickling_patch_is_cut_and_keeps_its_bytes(server_factory):
    server = server_factory(*RATE_ARGS)
    path = create_upload(server.port, 100_000)
    sent = 0
    started = time.monotonic()
    with RawConnection(server.port, timeout=10) as connection:
        connection.send(patch_head(path, 100_000))
        while time.monotonic() - started < 10:
            if not connection.send(b"a"):
                break
            sent += 1
            time.sleep(0.1)  # 10 bytes/s; a send fails once the server has closed the connection
        elapsed = time.monotonic() - started
    assert elapsed < 8, f"a 10 bytes/s body was not cut within {elapsed:.1f}s"
    wait_until(lambda: head_offset(server.port, path) > 0, timeout=5, message="the trickled bytes are kept")
    kept = head_offset(server.port, path)
    assert 0 < kept <= sent
    assert "body slower than 1000 bytes/s" in server.log_text()


@pytest.mark.time_limit(30)
def test_slow_patch_above_the_rate_completes(server_factory):
    server = server_factory(*RATE_ARGS)
    pieces, piece = 30, b"b" * 400  # about 4000 bytes/s for 3 s
    path = create_upload(server.port, pieces * len(piece))
    with RawConnection(server.port, timeout=10) as connection:
        connection.send(patch_head(path, pieces * len(piece)))
        for _ in range(pieces):
            assert connection.send(piece)
            time.sleep(0.1)
        response = connection.read_response()
    assert response is not None and response.status == 204, response
    assert head_offset(server.port, path) == pieces * len(piece)
