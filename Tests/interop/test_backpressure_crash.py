"""Regression: many large PATCH bodies over keep-alive connections.

This used to crash the server intermittently (SIGSEGV, libuv calling a NULL read callback): the connection
stopped reading from inside libuv's alloc callback. TCPStream now defers such a stop until the read is delivered
(see TusLoopTests.testStopReadingFromInsideAllocateIsDeferredToAfterThatRead).
"""

from __future__ import annotations

import os

import pytest
import requests

from tus_helpers import OFFSET_STREAM, TUS_HEADERS, create_upload

MiB = 1024 * 1024


@pytest.mark.time_limit(90)
def test_many_large_patches_keep_the_server_alive(server_factory):
    server = server_factory()  # --fsync commit: slow commits make fragments pile up
    data = os.urandom(8 * MiB)
    with requests.Session() as session:
        for _ in range(25):
            path = create_upload(server.port, len(data))
            offset = 0
            while offset < len(data):
                response = session.patch(
                    server.url(path), data=data[offset:offset + MiB], timeout=10,
                    headers={**TUS_HEADERS, "Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset)})
                assert response.status_code == 204
                offset = int(response.headers["Upload-Offset"])
    assert server.process is not None and server.process.poll() is None, server.log_text()[-2000:]
