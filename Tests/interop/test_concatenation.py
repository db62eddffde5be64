"""concatenation and concatenation-unfinished against the real binary: aiotus upload_multiple (partials, then a
final listing relative paths), tus-cli --parallel (absolute URLs; interrupted with kill -9 and re-run), a final
created before its partials finish, and kill -9 while a large final is being assembled.

Every case runs on the file store and on the S3 store against a real Ceph RGW (`backend`): records are read
from the upload directory or from the bucket (boto3), never through the server under test."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import uuid

import aiotus
import pytest
import requests

from s3_helpers import get_object, keys, multipart_uploads

from tus_helpers import (
    RawResponse, TusServer, create_upload, head_offset, patch, repo_root, request, sha256, wait_until)

MiB = 1024 * 1024
QUIET = aiotus.RetryConfiguration(retry_attempts=1, max_retry_period_seconds=0.1)


def cli_binary() -> str:
    configured = os.environ.get("TUS_CLI_BIN")
    if configured:
        return configured
    for candidate in (".build/release/tus-cli", ".build/debug/tus-cli"):
        path = repo_root() / candidate
        if path.exists():
            return str(path)
    raise RuntimeError("set TUS_CLI_BIN to a built tus-cli binary")


def create_partial(port: int, length: int) -> str:
    response = request(port, "POST", "/files/", {"Upload-Concat": "partial", "Upload-Length": str(length), "Content-Length": "0"})
    assert response is not None and response.status == 201, response
    return "/" + response.header("Location").split("/", 3)[3]


def create_final(port: int, paths: list[str]) -> RawResponse:
    response = request(port, "POST", "/files/", {"Upload-Concat": "final;" + " ".join(paths), "Content-Length": "0"})
    assert response is not None, "no answer"
    return response


def path_of(location: str) -> str:
    return "/" + location.split("/", 3)[3] if "://" in location else location


def download_sha256(port: int, path: str) -> str:
    """Streams a download through sha256 (the raw-socket helper buffers quadratically on hundreds of MiB)."""
    digest = hashlib.sha256()
    with requests.get(f"http://127.0.0.1:{port}{path}", stream=True, timeout=60) as response:
        assert response.status_code == 200, response.status_code
        for block in response.iter_content(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Backend:
    """Where a test's uploads live: a file store's directory, or an S3 bucket of the session's gateway (its own
    bucket per test; records as `<id>.info` objects). `server()` starts (or restarts) tus-server on it."""

    def __init__(self, kind: str, server_factory, tmp_path: pathlib.Path, rgw=None, monkeypatch=None):
        self.kind = kind
        self.server_factory = server_factory
        self.upload_dir = tmp_path / "uploads"
        self.rgw = rgw
        self.bucket = ""
        if kind == "s3":
            for name, value in rgw.credentials_env().items():
                monkeypatch.setenv(name, value)
            self.bucket = "concat-" + uuid.uuid4().hex[:16]
            self.s3 = rgw.client()
            self.s3.create_bucket(Bucket=self.bucket)

    def server(self, *args: str) -> TusServer:
        if self.kind == "s3":
            return self.server_factory(*self.rgw.server_args(self.bucket), *args, upload_dir=self.upload_dir)
        return self.server_factory(*args, upload_dir=self.upload_dir)

    def records(self) -> list[dict]:
        if self.kind == "file":
            # A creation writes its record straight at its final name (no tmp + rename), so a record of an upload
            # being created right now may still be empty or partly written: that upload is not there yet.
            found = []
            for path in sorted(self.upload_dir.glob("*.info")):
                try:
                    found.append(json.loads(path.read_text()))
                except (json.JSONDecodeError, FileNotFoundError):
                    continue
        else:
            found = [json.loads(get_object(self.s3, self.bucket, key))
                     for key in sorted(keys(self.s3, self.bucket)) if key.endswith(".info")]
        return [record for record in found if "gone" not in record]

    def record(self, ident: str) -> dict | None:
        """The upload's record; None once it is gone (deleted, or a gone marker)."""
        return next((r for r in self.records() if r["id"] == ident), None)

    def finals(self) -> list[dict]:
        return [record for record in self.records() if record.get("partialIDs")]

    def stored_bytes(self, record: dict) -> int:
        """Bytes of the upload the storage holds (data file size; on S3 the recorded offset, which counts only
        bytes the bucket holds)."""
        if self.kind == "file":
            return (self.upload_dir / record["id"]).stat().st_size
        return record["offset"]


@pytest.fixture(params=["file", "s3"])
def backend(request, server_factory, tmp_path, monkeypatch):
    rgw = request.getfixturevalue("rgw") if request.param == "s3" else None
    return Backend(request.param, server_factory, tmp_path, rgw=rgw, monkeypatch=monkeypatch)


def test_aiotus_upload_multiple_relative_paths(backend: Backend):
    server = backend.server()
    parts = [os.urandom(MiB + 17), os.urandom(3), os.urandom(2 * MiB)]
    metadata = {"filename": b"joined.bin"}

    async def scenario():
        files = [io.BytesIO(part) for part in parts]
        return await aiotus.upload_multiple(server.endpoint, files, metadata, config=QUIET, chunksize=MiB // 2)

    location = asyncio.run(asyncio.wait_for(scenario(), timeout=45))
    assert location is not None, "upload_multiple failed (aiotus logs why)"
    final = path_of(str(location))
    head = request(server.port, "HEAD", final)
    assert head.status == 200
    assert head.header("Upload-Concat").startswith("final;/files/"), "aiotus lists relative paths, echoed as sent"
    assert int(head.header("Upload-Offset")) == int(head.header("Upload-Length")) == sum(map(len, parts))
    assert head.header("Upload-Metadata") == "filename am9pbmVkLmJpbg=="
    body = request(server.port, "GET", final).body
    assert sha256(body) == sha256(b"".join(parts))


def run_cli(*args: str, cache: pathlib.Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([cli_binary(), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.time_limit(120)
def test_tus_cli_parallel_interrupted_resumes_parts_and_creates_one_final(backend: Backend, tmp_path):
    server = backend.server("--loops", "2")
    data = os.urandom(96 * MiB + 5)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    args = [cli_binary(), "upload", str(source), server.endpoint, "--parallel", "4", "--chunk-size", "1M", "-q"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # Kill once every part has bytes on the server but before they are all complete.
        def parts_started() -> bool:
            partials = [r for r in backend.records() if r.get("isPartial")]
            return len(partials) == 4 and all(backend.stored_bytes(r) > 0 for r in partials)
        wait_until(parts_started, timeout=30, interval=0.005, message="all four parts receiving")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        first.stdout.close()
        first.stderr.close()
    assert backend.finals() == [], "killed before the final existed"
    progress = {r["id"]: backend.stored_bytes(r) for r in backend.records()}

    second = run_cli("upload", str(source), server.endpoint, "--parallel", "4", "--chunk-size", "1M", cache=cache)
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("resuming part") == 4, second.stderr
    final_url = second.stdout.strip()
    partials = [r for r in backend.records() if r.get("isPartial")]
    assert len(partials) == 4, "every part resumed, none created again"
    assert len(backend.finals()) == 1
    assert sum(r["length"] for r in partials) == len(data)
    assert any(size < r["length"] for r in partials for i, size in progress.items() if i == r["id"]), \
        "the kill really interrupted a part"
    assert download_sha256(server.port, path_of(final_url)) == sha256(data)

    # Once finished, the cached parts are forgotten: a third run is a new upload, not a second final of the first.
    third = run_cli("upload", str(source), server.endpoint, "--parallel", "2", "-q", cache=cache)
    assert third.returncode == 0, third.stderr
    assert len(backend.finals()) == 2


def test_final_created_before_its_partials_finish(backend: Backend):
    server = backend.server()
    first, second = os.urandom(300 * 1024), os.urandom(200 * 1024)
    a = create_partial(server.port, len(first))
    b = create_partial(server.port, len(second))
    assert patch(server.port, a, 0, first).status == 204
    assert patch(server.port, b, 0, second[:1000]).status == 204
    created = create_final(server.port, [a, b])
    assert created.status == 201
    final = path_of(created.header("Location"))
    unfinished = request(server.port, "HEAD", final)
    assert unfinished.status == 200
    assert unfinished.header("Upload-Offset") is None, "SHOULD NOT until complete"
    assert unfinished.header("Upload-Length") == str(len(first) + len(second))
    assert patch(server.port, final, 0, b"x").status == 403
    assert patch(server.port, b, 1000, second[1000:]).status == 204
    ident = final.rsplit("/", 1)[1]
    wait_until(lambda: backend.record(ident)["offset"] == len(first) + len(second), timeout=10,
               message="the final completes by itself (no request on it) once its last partial is complete")
    complete = request(server.port, "HEAD", final)
    assert complete.header("Upload-Offset") == complete.header("Upload-Length") == str(len(first) + len(second))
    assert sha256(request(server.port, "GET", final).body) == sha256(first + second)
    ranged = request(server.port, "GET", final, {"Range": f"bytes={len(first) - 10}-{len(first) + 9}"})
    assert ranged.status == 206 and ranged.body == first[-10:] + second[:10], "a range across the part boundary"


@pytest.mark.time_limit(120)
def test_unfinished_final_expires_once_its_partial_has(backend: Backend):
    """An unfinished final carries Upload-Expires; once a partial expires it answers 410 and the sweep deletes it.
    A final its last PATCH completed loses its expiry and outlives every sweep."""
    # 2 s on files; on S3 every record change is a GET and a PUT, so the steps before the final's POST need longer
    # than 2 s on a loaded machine (the partial would expire first).
    expiration = 2 if backend.kind == "file" else 6
    server = backend.server("--expiration", str(expiration))
    stalled = create_partial(server.port, 10)
    done = create_partial(server.port, 3)
    assert patch(server.port, done, 0, b"abc").status == 204
    created = create_final(server.port, [done, stalled])
    assert created.status == 201
    assert created.header("Upload-Expires") is not None, "sent on POST like for any unfinished upload"
    final = path_of(created.header("Location"))
    unfinished = request(server.port, "HEAD", final)
    assert unfinished.status == 200 and unfinished.header("Upload-Offset") is None
    assert unfinished.header("Upload-Expires") is not None

    last = create_partial(server.port, 2)
    completed = create_final(server.port, [last])
    assert completed.status == 201 and completed.header("Upload-Expires") is not None
    kept = path_of(completed.header("Location"))
    assert patch(server.port, last, 0, b"xy").status == 204

    ident = final.rsplit("/", 1)[1]
    assert backend.record(ident) is not None
    wait_until(lambda: backend.record(ident) is None, timeout=10 * expiration, interval=0.2,
               message="the sweep removes the final whose partial expired")
    # On S3 a removed id answers 410 for --expiration seconds, then 404: both mean "no such upload now".
    remembered = (410,) if backend.kind == "file" else (410, 404)
    gone = request(server.port, "HEAD", final)
    assert gone.status in remembered and gone.header("Upload-Offset") is None
    assert request(server.port, "HEAD", stalled).status in remembered
    complete = request(server.port, "HEAD", kept)
    assert complete.status == 200 and complete.header("Upload-Offset") == "2"
    assert complete.header("Upload-Expires") is None, "a complete final never expires"
    assert request(server.port, "GET", kept).body == b"xy"
    assert request(server.port, "HEAD", done).status == 200, "a complete partial never expires"


@pytest.mark.time_limit(300)
def test_kill_9_during_assembly_of_a_large_final(backend: Backend):
    """4 big partials (64 MiB on files; 16 MiB on S3, still above its 5 MiB part minimum, so every part is an
    UploadPartCopy); the final is POSTed and the server killed some milliseconds later, again and again. After each
    restart the final either does not exist, or exists and is complete and byte-exact, or exists unfinished and
    completes on the next look; never wrong bytes."""
    size = 64 * MiB if backend.kind == "file" else 16 * MiB
    pieces = [os.urandom(size) for _ in range(4)]
    expected = sha256(b"".join(pieces))
    server = backend.server()
    paths = []
    for piece in pieces:
        path = create_partial(server.port, len(piece))
        for start in range(0, len(piece), 16 * MiB):
            assert patch(server.port, path, start, piece[start:start + 16 * MiB]).status == 204
        paths.append(path)
    if backend.kind == "file":
        delays = (0.0, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.012, 0.015, 0.020)
    else:
        # On S3 the POST takes requests (records, partials' HEADs, copies): spread the kills over one POST's time.
        started = time.monotonic()
        assert create_final(server.port, paths).status == 201
        took = time.monotonic() - started
        delays = tuple(took * fraction for fraction in (0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05))
    outcomes = []
    for delay in delays:
        known = {r["id"] for r in backend.finals()}
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        concat = "final;" + " ".join(paths)
        connection.sendall(
            f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Concat: {concat}\r\n"
            f"Content-Length: 0\r\n\r\n".encode())
        time.sleep(delay)
        server.kill()
        connection.close()
        server = backend.server()
        new = [r for r in backend.finals() if r["id"] not in known]
        if not new:
            outcomes.append("not created")
            continue
        (record,) = new
        outcomes.append("complete" if record["offset"] == record["length"] else "unfinished")
        head = request(server.port, "HEAD", "/files/" + record["id"])
        assert head.status == 200
        assert head.header("Upload-Offset") == head.header("Upload-Length") == str(4 * size)
        assert download_sha256(server.port, "/files/" + record["id"]) == expected
    print(f"\noutcomes after kill -9: {outcomes}")
    if backend.kind == "file":
        # The partials' data is linked, never copied: 256 MiB of partials + links, not 512 MiB.
        by_inode = {p.stat().st_ino: p for p in backend.upload_dir.iterdir() if p.is_file()}
        distinct = sum(p.stat().st_blocks * 512 for p in by_inode.values())
        assert distinct < 300 * MiB, f"finals share the partials' blocks ({distinct} bytes on disk)"
    else:
        # Every final that exists is a finished object; none is left as a multipart upload.
        finals = {r["id"] for r in backend.finals()}
        objects = keys(backend.s3, backend.bucket)
        assert all(objects.get(ident) == 4 * size for ident in finals), objects
        assert [u for u in multipart_uploads(backend.s3, backend.bucket) if u["Key"] in finals] == []
