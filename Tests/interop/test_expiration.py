"""Expiration end to end: the real binary, its sweep timer and the file store."""

from __future__ import annotations

import time

from tus_helpers import OFFSET_STREAM, create_upload, request


def test_unfinished_upload_expires_answers_410_and_its_files_are_swept(server_factory):
    server = server_factory("--expiration", "1")
    path = create_upload(server.port, 10)
    finished = create_upload(server.port, 3)
    response = request(server.port, "PATCH", finished,
                       {"Content-Type": OFFSET_STREAM, "Upload-Offset": "0"}, b"abc")
    assert response is not None and response.status == 204
    assert "Upload-Expires" not in dict(response.headers), "finished uploads never expire"
    data_file = server.data_file(path)
    assert data_file.exists()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and data_file.exists():
        time.sleep(0.2)
    assert not data_file.exists(), "the sweep should have removed the expired upload's data"
    assert not data_file.with_name(data_file.name + ".info").exists()

    head = request(server.port, "HEAD", path)
    assert head is not None and head.status == 410
    assert head.header("Upload-Offset") is None
    # The finished upload is still there.
    kept = request(server.port, "HEAD", finished)
    assert kept is not None and kept.status == 200 and kept.header("Upload-Offset") == "3"
