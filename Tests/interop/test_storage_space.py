"""A full or nearly full disk (issue 14 §3), on a small tmpfs mounted for the test (skipped where mounting is
not allowed): ENOSPC answers 507 with a tus error, and --min-free-space turns new uploads away while an upload
in progress still finishes. A restart on a full disk still serves every upload (issue 21 §2)."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import pathlib
import subprocess

import pytest

from tus_helpers import OFFSET_STREAM, RawConnection, create_upload, head_offset, patch, request, sha256, wait_until

MIB = 1024 * 1024


def mounted_tmpfs(tmp_path: pathlib.Path, size: str):
    """A tmpfs of `size` (mount's syntax); unmounted (lazily, whatever still holds it) after the test."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True, timeout=10)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


@pytest.fixture
def small_disk(tmp_path: pathlib.Path):
    """A 4 MiB tmpfs."""
    yield from mounted_tmpfs(tmp_path, "4m")


@pytest.fixture
def disk_16m(tmp_path: pathlib.Path):
    """A 16 MiB tmpfs."""
    yield from mounted_tmpfs(tmp_path, "16m")


def fill_up(path: pathlib.Path) -> None:
    with open(path, "wb", buffering=0) as ballast:
        try:
            while True:
                ballast.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error


@pytest.mark.time_limit(60)
def test_full_disk_answers_507(server_factory, small_disk: pathlib.Path):
    server = server_factory("--fsync", "none", upload_dir=small_disk / "uploads")
    filler = create_upload(server.port, 3 * MIB + 512 * 1024)
    response = patch(server.port, filler, 0, b"f" * (3 * MIB + 512 * 1024))
    assert response is not None and response.status == 204, response

    victim = create_upload(server.port, MIB)
    response = patch(server.port, victim, 0, b"v" * MIB)
    assert response is not None, "the server answers before closing"
    assert response.status == 507, response
    assert response.body.startswith(b"ERR_INSUFFICIENT_STORAGE"), response
    assert head_offset(server.port, victim) < MIB

    # Small PATCHes fill what is left; the one that hits the end of the disk is 507, never a 204 that quietly
    # stored less than it was sent (its last write fails after the body has ended).
    statuses = []
    for _ in range(40):
        offset = head_offset(server.port, victim)
        response = patch(server.port, victim, offset, b"v" * 64 * 1024)
        assert response is not None
        statuses.append(response.status)
        if response.status != 204:
            break
        assert int(response.header("Upload-Offset")) == offset + 64 * 1024, "a 204 means every byte was stored"
    assert statuses[-1] == 507, statuses

    # Nothing left at all (the truncated tail freed a page or two: take them), so even the record of a new
    # upload cannot be written; that is a 507 too, not a 500.
    fill_up(small_disk / "ballast")
    response = request(server.port, "POST", "/files/", {"Upload-Length": "10"})
    assert response is not None and response.status == 507, response


@pytest.mark.time_limit(60)
def test_min_free_space_refuses_new_uploads_but_lets_running_ones_finish(server_factory, small_disk: pathlib.Path):
    server = server_factory("--fsync", "none", "--min-free-space", "50%", upload_dir=small_disk / "uploads")
    running = create_upload(server.port, 3 * MIB)
    assert patch(server.port, running, 0, b"a" * MIB).status == 204
    assert create_upload(server.port, 10), "75% free: creation works"

    assert patch(server.port, running, MIB, b"b" * (MIB + MIB // 2)).status == 204
    refused = request(server.port, "POST", "/files/", {"Upload-Length": "10"})
    assert refused is not None and refused.status == 507, refused
    assert refused.body.startswith(b"ERR_INSUFFICIENT_STORAGE"), refused
    assert refused.header("Location") is None

    response = patch(server.port, running, MIB * 5 // 2, b"c" * (MIB // 2))
    assert response is not None and response.status == 204, "the upload in progress finishes"
    assert head_offset(server.port, running) == 3 * MIB


@pytest.mark.time_limit(90)
def test_restart_on_a_full_disk_serves_the_upload_and_completes_it_once_space_is_back(server_factory, disk_16m):
    """Issue 21 §2: a PATCH that fills the disk answers 507; killed (-9) and restarted with the disk still full.
    The record still says offset 0 (a plain PATCH writes none, issue 19), so recovery takes the offset from the
    data file and needs no write at all. The upload must answer HEAD with the offset its data says (never 404,
    which would make the client start over), PATCH 507 while the disk is full, and complete byte-exact once space
    is freed. A restart whose recovery must write a record on the full disk: the test after this one."""
    uploads = disk_16m / "uploads"
    ballast = disk_16m / "ballast"
    with open(ballast, "wb") as file:
        file.write(b"\0" * (8 * MIB))
    data = os.urandom(12 * MIB)
    server = server_factory("--fsync", "commit", upload_dir=uploads)
    path = create_upload(server.port, len(data))
    response = patch(server.port, path, 0, data)
    assert response is not None and response.status == 507, response
    stored = head_offset(server.port, path)
    assert 0 < stored < len(data)
    fill_up(disk_16m / "more-ballast")  # whatever the failed write's cleanup freed
    server.kill()

    restarted = server_factory("--fsync", "commit", upload_dir=uploads)
    log = restarted.log_text()
    assert "served at offset" not in log, "more data than the record says needs no rewrite:\n" + log[-3000:]
    assert head_offset(restarted.port, path) == stored, "every stored byte counts, and the upload is found"
    assert server.data_file(path).read_bytes() == data[:stored]
    refused = patch(restarted.port, path, stored, data[stored:stored + MIB])
    assert refused is not None and refused.status == 507, refused
    assert refused.body.startswith(b"ERR_INSUFFICIENT_STORAGE"), refused
    assert head_offset(restarted.port, path) == stored

    ballast.unlink()
    (disk_16m / "more-ballast").unlink()
    response = patch(restarted.port, path, stored, data[stored:])
    assert response is not None and response.status == 204, response
    assert int(response.header("Upload-Offset")) == len(data)
    download = request(restarted.port, "GET", path)
    assert download is not None and download.status == 200
    assert sha256(download.body) == sha256(data)
    assert sha256(server.data_file(path).read_bytes()) == sha256(data)
    restarted.kill()
    again = server_factory("--fsync", "commit", upload_dir=uploads)
    assert head_offset(again.port, path) == len(data), "complete after a restart: the data file says so"


@pytest.mark.time_limit(90)
def test_restart_on_a_full_disk_that_must_clear_a_discard_mark(server_factory, disk_16m):
    """Issue 21 §2 where recovery must write: killed (-9) mid checksummed PATCH, the record carries
    `pendingDiscardFrom`; restarted on a full disk, recovery cuts the unverified bytes (which frees nothing: they
    share a page with verified ones) but cannot rewrite the record. The upload is served at the verified offset,
    its next PATCH answers 507 until space is back (the repair rewrites the record first), then completes."""
    uploads = disk_16m / "uploads"
    data = os.urandom(64 * 1024)
    start = 1000
    server = server_factory("--fsync", "commit", upload_dir=uploads)
    path = create_upload(server.port, len(data))
    first = patch(server.port, path, 0, data[:start])
    assert first is not None and first.status == 204
    body = data[start:]
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()
    connection = RawConnection(server.port, timeout=10)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OFFSET_STREAM}\r\n"
        f"Upload-Offset: {start}\r\nContent-Length: {len(body)}\r\nUpload-Checksum: sha1 {digest}\r\n\r\n")
    assert connection.send(head.encode() + body[:500])
    data_file = server.data_file(path)
    wait_until(lambda: data_file.stat().st_size == start + 500, timeout=5, message="unverified bytes written")
    record_path = uploads / (path.rstrip("/").rsplit("/", 1)[-1] + ".info")
    assert f'"pendingDiscardFrom":{start}'.encode() in record_path.read_bytes()
    fill_up(disk_16m / "ballast")
    server.kill()
    connection.close()

    restarted = server_factory("--fsync", "commit", upload_dir=uploads)
    log = restarted.log_text()
    assert "served at offset 1000" in log, "the restart met the full disk rewriting the record:\n" + log[-3000:]
    assert head_offset(restarted.port, path) == start, "unverified bytes never count, the upload is found"
    assert data_file.read_bytes() == data[:start], "cut all the same"
    assert f'"pendingDiscardFrom":{start}'.encode() in record_path.read_bytes(), "the old record stays"
    refused = patch(restarted.port, path, start, body)
    assert refused is not None and refused.status == 507, refused
    assert refused.body.startswith(b"ERR_INSUFFICIENT_STORAGE"), refused
    assert head_offset(restarted.port, path) == start

    (disk_16m / "ballast").unlink()
    response = patch(restarted.port, path, start, body)
    assert response is not None and response.status == 204, response
    assert int(response.header("Upload-Offset")) == len(data)
    assert b'"pendingDiscardFrom":null' in record_path.read_bytes(), "the repair rewrote the record"
    download = request(restarted.port, "GET", path)
    assert download is not None and download.status == 200
    assert sha256(download.body) == sha256(data)
    restarted.kill()
    again = server_factory("--fsync", "commit", upload_dir=uploads)
    assert head_offset(again.port, path) == len(data)
