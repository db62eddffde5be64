"""Restart safety on local disk: every byte the server acknowledged survives SIGTERM and kill -9, metadata
too, and uploads resume to a byte-exact result. Each test runs both with --fsync commit (the default) and
--fsync none (no fsync at all: a process crash must still lose nothing acknowledged)."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest
import requests

from ietf_client import DraftClient, path_of
from tus_helpers import (
    OFFSET_STREAM, TUS_HEADERS, RawConnection, create_upload, head_offset, patch, request, sha256, wait_until)

MiB = 1024 * 1024
FSYNC_MODES = ["commit", "none"]


def finish(port: int, path: str, data: bytes, offset: int, piece: int = 4 * MiB) -> None:
    with requests.Session() as session:
        while offset < len(data):
            body = data[offset:offset + piece]
            response = session.patch(
                f"http://127.0.0.1:{port}{path}", data=body, timeout=30,
                headers={**TUS_HEADERS, "Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset)})
            assert response.status_code == 204, response.text
            offset = int(response.headers["Upload-Offset"])
    assert offset == len(data)


def assert_stored(server, path: str, data: bytes) -> None:
    response = request(server.port, "GET", path)
    assert response is not None and response.status == 200
    assert sha256(response.body) == sha256(data)
    assert sha256(server.data_file(path).read_bytes()) == sha256(data)


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_sigterm_keeps_every_acknowledged_byte_and_metadata(server_factory, tmp_path, fsync):
    data = os.urandom(20 * MiB)
    metadata = "filename YmlnLmJpbg==,flag"
    server = server_factory("--fsync", fsync)
    path = create_upload(server.port, len(data), metadata)
    acknowledged = 0
    with requests.Session() as session:
        while acknowledged < len(data) // 2:
            response = session.patch(
                server.url(path), data=data[acknowledged:acknowledged + MiB], timeout=30,
                headers={**TUS_HEADERS, "Content-Type": OFFSET_STREAM, "Upload-Offset": str(acknowledged)})
            assert response.status_code == 204
            acknowledged = int(response.headers["Upload-Offset"])
    assert server.stop() == 0, "graceful shutdown exits 0"

    restarted = server_factory("--fsync", fsync, upload_dir=server.upload_dir)
    head = request(restarted.port, "HEAD", path)
    assert head is not None and head.status == 200
    assert int(head.header("Upload-Offset")) == acknowledged, "graceful: exactly what was acknowledged"
    assert head.header("Upload-Length") == str(len(data))
    assert head.header("Upload-Metadata") == metadata
    assert server.data_file(path).read_bytes()[:acknowledged] == data[:acknowledged]
    finish(restarted.port, path, data, acknowledged)
    assert_stored(restarted, path, data)


def start_slow_patch(port: int, path: str, offset: int, total: int, headers: dict[str, str] | None = None) -> RawConnection:
    connection = RawConnection(port, timeout=10)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: {OFFSET_STREAM}\r\nUpload-Offset: {offset}\r\nContent-Length: {total}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n")
    assert connection.send(head.encode())
    return connection


def send_slowly(connection: RawConnection, body: bytes, piece: int = 64 * 1024, pause: float = 0.002) -> None:
    for start in range(0, len(body), piece):
        assert connection.send(body[start:start + piece]), "server hung up mid-body"
        time.sleep(pause)


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_kill_9_mid_patch_keeps_acknowledged_prefix(server_factory, fsync):
    data = os.urandom(8 * MiB)
    server = server_factory("--fsync", fsync)
    path = create_upload(server.port, len(data), "k dg==")
    acknowledged = []
    first = patch(server.port, path, 0, data[:MiB])
    assert first is not None and first.status == 204
    acknowledged.append(int(first.header("Upload-Offset")))

    start = acknowledged[-1]
    sent = 3 * MiB
    connection = start_slow_patch(server.port, path, start, len(data) - start)
    send_slowly(connection, data[start:start + sent])
    seen: list[int] = []

    def progressed() -> bool:
        seen.append(head_offset(server.port, path))
        return seen[-1] > start

    wait_until(progressed, timeout=20, message="HEAD shows the in-flight PATCH's progress")
    server.kill()
    connection.close()

    restarted = server_factory("--fsync", fsync, upload_dir=server.upload_dir)
    offset = head_offset(restarted.port, path)
    print(f"\nfsync={fsync} acknowledged={acknowledged} head-seen={seen[-1]} after-restart={offset}")
    assert offset >= max(acknowledged), f"lost acknowledged bytes: {offset} < {max(acknowledged)}"
    assert offset <= start + sent, "never more than was sent"
    stored = server.data_file(path).read_bytes()
    assert len(stored) >= offset
    assert stored[:offset] == data[:offset], "the stored prefix is exactly the sent prefix"
    head = request(restarted.port, "HEAD", path)
    assert head.header("Upload-Metadata") == "k dg==" and head.header("Upload-Length") == str(len(data))
    finish(restarted.port, path, data, offset)
    assert_stored(restarted, path, data)


@pytest.mark.time_limit(60)
def test_kill_9_mid_checksummed_patch_cuts_the_uncommitted_chunk(server_factory):
    data = os.urandom(4 * MiB)
    server = server_factory()
    path = create_upload(server.port, len(data))
    first = patch(server.port, path, 0, data[:MiB])
    assert first is not None and first.status == 204
    start = MiB
    body = data[start:]
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()
    connection = start_slow_patch(server.port, path, start, len(body), {"Upload-Checksum": f"sha1 {digest}"})
    send_slowly(connection, body[:2 * MiB])
    # Checksummed bytes are invisible to HEAD until verified; wait until they reach the disk instead.
    data_file = server.data_file(path)
    try:
        wait_until(lambda: data_file.stat().st_size > start, timeout=3, message="unverified bytes written")
    except TimeoutError:
        time.sleep(0.5)  # the store may stage them elsewhere; give it time to write them anyway
    print(f"\ndata file before kill: {data_file.stat().st_size}")
    assert head_offset(server.port, path) == start
    server.kill()
    connection.close()

    restarted = server_factory(upload_dir=server.upload_dir)
    assert head_offset(restarted.port, path) == start, "unverified bytes are cut after a crash"
    assert server.data_file(path).read_bytes()[:start] == data[:start]
    response = patch(restarted.port, path, start, body, {"Upload-Checksum": f"sha1 {digest}"})
    assert response is not None and response.status == 204
    assert_stored(restarted, path, data)


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_kill_9_after_many_concurrent_uploads_keeps_each_one(server_factory, fsync):
    """64 uploads created and sent at once (creations batched per loop, records at their final names, no record
    rewrite for a PATCH that only moves the offset or completes): after kill -9 each one is back with exactly the
    acknowledged bytes, expiry and metadata, every upload is two files, and recovery rewrote no record."""
    from concurrent.futures import ThreadPoolExecutor

    server = server_factory("--fsync", fsync)
    bodies = [os.urandom(4096 + index) for index in range(64)]

    def upload(index: int) -> tuple[str, int]:
        body = bodies[index]
        # Even uploads are sent whole, odd ones half (they stay incomplete, with an expiry).
        length = len(body) if index % 2 == 0 else 2 * len(body)
        path = create_upload(server.port, length, f"i {base64.b64encode(str(index).encode()).decode()}")
        response = patch(server.port, path, 0, body)
        assert response is not None and response.status == 204, response
        return path, int(response.header("Upload-Offset"))

    with ThreadPoolExecutor(max_workers=32) as pool:
        uploads = list(pool.map(upload, range(64)))
    names = sorted(entry.name for entry in server.upload_dir.iterdir())
    assert len(names) == 128 and not [name for name in names if name.endswith(".tmp")], names[:6]
    records_before = {name: (server.upload_dir / name).read_bytes() for name in names if name.endswith(".info")}
    expiries = [request(server.port, "HEAD", path).header("Upload-Expires") for path, _ in uploads]
    server.kill()

    restarted = server_factory("--fsync", fsync, upload_dir=server.upload_dir)
    for index, (path, acknowledged) in enumerate(uploads):
        head = request(restarted.port, "HEAD", path)
        assert head is not None and head.status == 200
        assert int(head.header("Upload-Offset")) == acknowledged == len(bodies[index])
        assert head.header("Upload-Metadata") == f"i {base64.b64encode(str(index).encode()).decode()}"
        assert head.header("Upload-Expires") == expiries[index], index
        if index % 2 == 0:
            assert expiries[index] is None, "a complete upload has no expiry"
            response = request(restarted.port, "GET", path)
            assert response is not None and response.status == 200 and response.body == bodies[index]
        else:
            assert expiries[index] is not None
    records_after = {name: (server.upload_dir / name).read_bytes() for name in records_before}
    assert records_after == records_before, "recovery rewrote records it could derive"


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_records_log_layout_survives_kill_9_and_upgrades_in_place(server_factory, fsync):
    """`--records log`: one file per upload (the record is a line of records.<n>.log). An upload made by the
    `.info` layout keeps working under it, a kill -9 loses nothing acknowledged nor brings back a DELETEd upload,
    and going back to the default layout turns the log into `.info` files."""
    data = os.urandom(2 * MiB)
    server = server_factory("--fsync", fsync)
    old = create_upload(server.port, len(data), "n b2xk")
    assert patch(server.port, old, 0, data[:MiB]).status == 204
    assert server.stop() == 0

    logged = server_factory("--fsync", fsync, "--records", "log", upload_dir=server.upload_dir)
    new = create_upload(logged.port, len(data), "n bmV3")
    deleted = create_upload(logged.port, len(data))
    assert patch(logged.port, new, 0, data[:MiB // 2]).status == 204
    assert request(logged.port, "DELETE", deleted).status == 204
    names = sorted(entry.name for entry in server.upload_dir.iterdir())
    new_id, old_id = server.data_file(new).name, server.data_file(old).name
    assert names == sorted([old_id, old_id + ".info", new_id, "records.1.log"]), names
    logged.kill()

    restarted = server_factory("--fsync", fsync, "--records", "log", upload_dir=server.upload_dir)
    assert head_offset(restarted.port, old) == MiB
    assert head_offset(restarted.port, new) == MiB // 2
    assert request(restarted.port, "HEAD", new).header("Upload-Metadata") == "n bmV3"
    assert request(restarted.port, "HEAD", deleted).status in (404, 410)
    finish(restarted.port, old, data, MiB)
    assert_stored(restarted, old, data)
    assert restarted.stop() == 0

    files = server_factory("--fsync", fsync, upload_dir=server.upload_dir)
    assert not list(server.upload_dir.glob("records.*")), "the log became .info files"
    assert (server.upload_dir / (new_id + ".info")).exists()
    finish(files.port, new, data, MiB // 2)
    assert_stored(files, new, data)


@pytest.mark.time_limit(60)
def test_draft_upload_awaiting_completion_still_expires_after_a_restart(server_factory):
    """All bytes of a draft upload stored, its completion not declared (`Upload-Complete: ?0`): it is unfinished, so
    it keeps its expiry across a restart (recovery dropped it, as for a complete upload) and the sweep removes it."""
    server = server_factory("--expiration", "2")
    client = DraftClient(server.port, 6)
    created = client.create("/files/", b"x" * 100, complete=False, length=100)
    assert created.status == 201, created
    location = created.header("location")
    assert client.offset(location).header("upload-offset") == "100"
    data_file = server.data_file(path_of(location))
    assert server.stop() == 0

    restarted = server_factory("--expiration", "2", upload_dir=server.upload_dir)
    restarted_client = DraftClient(restarted.port, 6)
    assert restarted_client.offset(location).status in (200, 204)
    wait_until(lambda: not data_file.exists(), timeout=15, interval=0.2, message="the sweep removing the upload")
    assert restarted_client.offset(location).status in (404, 410)
