"""A full or nearly full disk (issue 14 §3), on a small tmpfs mounted for the test (skipped where mounting is
not allowed): ENOSPC answers 507 with a tus error, and --min-free-space turns new uploads away while an upload
in progress still finishes."""

from __future__ import annotations

import errno
import pathlib
import subprocess

import pytest

from tus_helpers import create_upload, head_offset, patch, request

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: pathlib.Path):
    """A 4 MiB tmpfs; unmounted (lazily, whatever still holds it) after the test."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True, timeout=10)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


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
