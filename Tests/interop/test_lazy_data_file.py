"""A creation makes no data file: `<id>` appears with the upload's first byte (issue 19, the creation's CPU). An
upload with no bytes yet answers HEAD and GET, survives a restart, takes its first PATCH after one, and can be a
partial of a concatenation; both record layouts, both fsync policies."""

from __future__ import annotations

import os
import re

import pytest

from tus_helpers import TUS_HEADERS, create_upload, head_offset, patch, request

LAYOUTS = [("files", "commit"), ("files", "none"), ("log", "commit"), ("log", "none")]


def post(port: int, headers: dict[str, str]) -> str:
    response = request(port, "POST", "/files/", {**TUS_HEADERS, "Content-Length": "0", **headers})
    assert response is not None and response.status == 201, response
    return re.sub(r"^https?://[^/]+", "", response.header("Location"))


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("records,fsync", LAYOUTS)
def test_post_head_get_and_patch_after_a_restart_without_a_data_file(server_factory, records, fsync):
    server = server_factory("--fsync", fsync, "--records", records)
    fresh = create_upload(server.port, 10)
    empty = create_upload(server.port, 0)
    deferred_path = create_upload(server.port, None)
    for path in (fresh, empty, deferred_path):
        assert not server.data_file(path).exists(), "a creation makes no data file"
    assert head_offset(server.port, fresh) == 0
    assert head_offset(server.port, empty) == 0
    got = request(server.port, "GET", empty)
    assert got is not None and got.status == 200 and got.body == b"", got
    got = request(server.port, "GET", fresh)
    assert got is not None and got.status == 200 and got.body == b"", got
    assert not server.data_file(fresh).exists(), "reading makes no file either"
    assert server.stop() == 0

    restarted = server_factory("--fsync", fsync, "--records", records, upload_dir=server.upload_dir)
    assert head_offset(restarted.port, fresh) == 0, "a restart serves it without a file"
    assert head_offset(restarted.port, empty) == 0
    assert not restarted.data_file(fresh).exists(), "and makes none"
    data = os.urandom(10)
    assert patch(restarted.port, fresh, 0, data[:4]).status == 204
    assert restarted.data_file(fresh).read_bytes() == data[:4], "the first PATCH made it"
    assert patch(restarted.port, fresh, 4, data[4:]).status == 204
    got = request(restarted.port, "GET", fresh)
    assert got is not None and got.status == 200 and got.body == data

    # A partial with no bytes has no file; the final still assembles, and DELETE of a fileless upload works.
    first = post(restarted.port, {"Upload-Length": "3", "Upload-Concat": "partial"})
    none = post(restarted.port, {"Upload-Length": "0", "Upload-Concat": "partial"})
    assert patch(restarted.port, first, 0, b"abc").status == 204
    final_path = post(restarted.port, {"Upload-Concat": f"final;{first} {none}"})
    got = request(restarted.port, "GET", final_path)
    assert got is not None and got.status == 200 and got.body == b"abc", got
    assert request(restarted.port, "DELETE", deferred_path).status == 204
    assert request(restarted.port, "HEAD", deferred_path).status in (404, 410)
    assert request(restarted.port, "HEAD", create_upload(restarted.port, 1)).status == 200, "still serving"
