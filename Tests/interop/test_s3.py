"""The S3 store (--store s3) against a real Ceph RADOS Gateway: uploads land in object storage.

Each test has its own bucket on one gateway per session (scripts/ceph-rgw.sh, memstore OSD). What the bucket holds
is checked with boto3, not with our own server: GetObject of the finished object, ListMultipartUploads, ListParts.
Part size 5 MiB (S3's minimum), so a few MiB cross part boundaries and PATCHes end inside parts.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import time

import aiotus
import pytest
import requests
from tusclient import client as tus_client

from cluster_helpers import RedisServer
from s3_helpers import PART, durable_prefix, get_object, keys, multipart_uploads, upload_id
from tus_helpers import (
    OFFSET_STREAM, TUS_HEADERS, TusServer, create_upload, draft_request, head_offset, patch, request, sha256)

MiB = 1024 * 1024


@pytest.fixture
def bucket(rgw, request):
    name = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    s3 = rgw.client()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_servers(rgw, tmp_path, monkeypatch):
    """Starts tus-server instances on the gateway (credentials from the environment, the AWS way)."""
    for name, value in rgw.credentials_env().items():
        monkeypatch.setenv(name, value)
    started: list[TusServer] = []

    def make(bucket: str, *extra: str) -> TusServer:
        directory = tmp_path / f"spill-{len(started)}"
        directory.mkdir()
        server = TusServer(directory, *rgw.server_args(bucket, *extra), log_path=tmp_path / f"server-{len(started)}.log")
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop(grace=5)


def assert_landed(rgw, bucket: str, url: str, data: bytes, state_in_bucket: bool = True) -> None:
    """The finished object is exactly the data; nothing else of the upload is left but its record."""
    s3 = rgw.client()
    ident = upload_id(url)
    assert sha256(get_object(s3, bucket, ident)) == sha256(data)
    expected = {ident: len(data)}
    found = keys(s3, bucket, ident)
    if state_in_bucket:
        assert f"{ident}.info" in found
        found.pop(f"{ident}.info")
    assert found == expected, found
    assert [u for u in multipart_uploads(s3, bucket) if u["Key"] == ident] == []


SIZES = {"1B": 1, "5MiB-1": PART - 1, "one-part": PART, "parts-and-tail": 2 * PART + 12345}


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES.keys()))
def test_tuspy_uploads_land_in_the_bucket(rgw, bucket, s3_servers, tmp_path, size):
    server = s3_servers(bucket)
    data = os.urandom(size)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    # 3 MiB chunks: PATCHes end inside parts, so incomplete-part objects carry bytes between requests.
    uploader = tus_client.TusClient(server.endpoint).uploader(str(path), chunk_size=3 * MiB, retries=0)
    uploader.upload()
    assert uploader.offset == size
    assert_landed(rgw, bucket, uploader.url, data)
    served = requests.get(uploader.url, timeout=30)
    assert served.status_code == 200 and sha256(served.content) == sha256(data)
    ranged = requests.get(uploader.url, headers={"Range": f"bytes={size // 2}-"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[size // 2:]


@pytest.mark.parametrize("size", [1, PART - 1, PART, 2 * PART + 777], ids=["1B", "5MiB-1", "one-part", "parts-and-tail"])
def test_aiotus_uploads_land_in_the_bucket(rgw, bucket, s3_servers, size):
    server = s3_servers(bucket)
    data = os.urandom(size)
    config = aiotus.RetryConfiguration(retry_attempts=1, max_retry_period_seconds=0.1)

    async def scenario():
        return await aiotus.upload(server.endpoint, io.BytesIO(data), {"filename": b"x.bin"}, config=config,
                                   chunksize=2 * MiB)

    location = asyncio.run(asyncio.wait_for(scenario(), timeout=45))
    assert location is not None
    assert_landed(rgw, bucket, str(location), data)


def test_empty_uploads_are_empty_objects(rgw, bucket, s3_servers):
    """Upload-Length: 0 at creation, and a deferred length declared 0: both finish as an empty object."""
    server = s3_servers(bucket)
    at_creation = create_upload(server.port, 0)
    deferred = create_upload(server.port, None)
    answer = patch(server.port, deferred, 0, b"", {"Upload-Length": "0"})
    assert answer is not None and answer.status == 204, answer
    for path in (at_creation, deferred):
        assert_landed(rgw, bucket, path, b"")
        served = request(server.port, "GET", path)
        assert served is not None and served.status == 200 and served.body == b""


def test_deferred_length_declared_in_an_empty_patch(rgw, bucket, s3_servers):
    """The last part is only in the incomplete-part object when the length is declared: it is uploaded then."""
    server = s3_servers(bucket)
    data = os.urandom(PART + 3 * MiB)
    path = create_upload(server.port, None)
    for offset in range(0, len(data), 2 * MiB):
        piece = data[offset:offset + 2 * MiB]
        answer = patch(server.port, path, offset, piece)
        assert answer is not None and answer.status == 204, answer
    answer = patch(server.port, path, len(data), b"", {"Upload-Length": str(len(data))})
    assert answer is not None and answer.status == 204, answer
    assert answer.header("Upload-Offset") == str(len(data))
    assert_landed(rgw, bucket, path, data)


def test_checksum_mismatch_keeps_the_offset_and_the_upload_resumes(rgw, bucket, s3_servers, tmp_path):
    server = s3_servers(bucket)
    data = os.urandom(PART + MiB)
    path = create_upload(server.port, len(data))
    first = data[:3 * MiB]
    answer = patch(server.port, path, 0, first, {"Upload-Checksum": "sha1 " + __import__("base64").b64encode(
        __import__("hashlib").sha1(first).digest()).decode()})
    assert answer is not None and answer.status == 204
    bad = data[3 * MiB:]
    answer = patch(server.port, path, 3 * MiB, bad, {"Upload-Checksum": "sha1 " + "A" * 27 + "="})
    assert answer is not None and answer.status == 460, answer
    assert head_offset(server.port, path) == 3 * MiB
    answer = patch(server.port, path, 3 * MiB, bad)
    assert answer is not None and answer.status == 204
    assert_landed(rgw, bucket, path, data)


def send_partial_patch(port: int, path: str, offset: int, total: int, data: bytes) -> socket.socket:
    """A PATCH announcing `total` bytes of which only `data` is sent: the request stays open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n"
            f"Content-Type: {OFFSET_STREAM}\r\nContent-Length: {total}\r\n\r\n").encode()
    sock.sendall(head + data)
    return sock


@pytest.mark.time_limit(90)
def test_kill_9_mid_patch_keeps_only_bytes_the_bucket_holds(rgw, bucket, s3_servers):
    server = s3_servers(bucket)
    data = os.urandom(4 * PART + 1000)
    path = create_upload(server.port, len(data))
    sent = 3 * PART + 2 * MiB
    sock = send_partial_patch(server.port, path, 0, len(data), data[:sent])
    s3 = rgw.client()
    ident = upload_id(path)
    # Wait until a checkpoint recorded a part S3 confirmed (checkpoints come every part or second of writes).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and head_offset(server.port, path) < PART:
        time.sleep(0.2)
    assert head_offset(server.port, path) >= PART
    time.sleep(1)  # let more parts land after the checkpoint: the bucket may hold more than HEAD says
    server.kill()
    sock.close()

    restarted = s3_servers(bucket)
    offset = head_offset(restarted.port, path)
    assert 0 < offset <= durable_prefix(s3, bucket, ident, data), "HEAD never exceeds what the bucket holds"
    answer = patch(restarted.port, path, offset, data[offset:])
    assert answer is not None and answer.status == 204, answer
    assert_landed(rgw, bucket, path, data)


def test_delete_leaves_no_object_and_no_multipart_upload(rgw, bucket, s3_servers):
    server = s3_servers(bucket)
    data = os.urandom(PART + 2 * MiB)
    path = create_upload(server.port, 3 * PART)
    answer = patch(server.port, path, 0, data)  # one full part and an incomplete-part object
    assert answer is not None and answer.status == 204
    s3 = rgw.client()
    ident = upload_id(path)
    assert f"{ident}.part.2" in keys(s3, bucket, ident)
    assert len(multipart_uploads(s3, bucket)) == 1
    # S3 cannot read the parts of an unfinished multipart upload: GET serves finished uploads only (README).
    unfinished = request(server.port, "GET", path)
    assert unfinished is not None and unfinished.status == 404
    response = request(server.port, "DELETE", path)
    assert response is not None and response.status == 204
    assert multipart_uploads(s3, bucket) == []
    left = keys(s3, bucket, ident)
    # Only the record remains, as a gone marker (HEAD answers 410, also after a restart).
    assert list(left) == [f"{ident}.info"], left
    assert b"gone" in get_object(s3, bucket, f"{ident}.info")
    head = request(server.port, "HEAD", path)
    assert head is not None and head.status == 410


@pytest.mark.time_limit(90)
def test_expiry_aborts_the_multipart_upload(rgw, bucket, s3_servers):
    # 8 s: the PATCH must finish before the upload expires, on a loaded machine and even when this is the gateway's
    # first multipart upload (RGW then creates its multipart pool, which took 4 s here). The sweep runs every 8 s.
    server = s3_servers(bucket, "--expiration", "8")
    path = create_upload(server.port, 3 * PART)
    answer = requests.patch(server.url(path), data=os.urandom(PART + MiB), timeout=60,
                            headers={**TUS_HEADERS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"})
    assert answer.status_code == 204, answer.text
    s3 = rgw.client()
    ident = upload_id(path)
    assert len(multipart_uploads(s3, bucket)) == 1 and f"{ident}.part.2" in keys(s3, bucket, ident)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and (multipart_uploads(s3, bucket) or len(keys(s3, bucket, ident)) > 1):
        time.sleep(0.3)
    assert multipart_uploads(s3, bucket) == []
    assert list(keys(s3, bucket, ident)) == [f"{ident}.info"]
    head = request(server.port, "HEAD", path)
    assert head is not None and head.status == 410


@pytest.mark.time_limit(120)
def test_unfinished_final_is_swept_after_its_partial_expires(rgw, bucket, s3_servers):
    """Records as objects (no Redis): the final listing an abandoned partial carries Upload-Expires and is swept with
    it; its record becomes a gone marker, which answers 410 for --expiration seconds, then 404, and the sweep
    deletes it (markers do not pile up in the bucket)."""
    server = s3_servers(bucket, "--expiration", "6")
    response = request(server.port, "POST", "/files/", {"Upload-Concat": "partial", "Upload-Length": "10"})
    assert response is not None and response.status == 201
    partial = "/" + response.header("Location").split("/", 3)[3]
    created = request(server.port, "POST", "/files/", {"Upload-Concat": "final;" + partial})
    assert created is not None and created.status == 201 and created.header("Upload-Expires") is not None
    final = "/" + created.header("Location").split("/", 3)[3]
    s3 = rgw.client()
    record = f"{upload_id(final)}.info"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and b"gone" not in get_object(s3, bucket, record):
        time.sleep(0.3)
    marker = json.loads(get_object(s3, bucket, record))
    assert marker["gone"] == "expired" and marker["at"] > 0, marker
    assert request(server.port, "HEAD", final).status == 410
    assert request(server.port, "HEAD", partial).status == 410
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and record in keys(s3, bucket, upload_id(final)):
        time.sleep(0.5)
    assert record not in keys(s3, bucket, upload_id(final)), "the sweep deleted the marker after its window"
    assert request(server.port, "HEAD", final).status == 404
    assert request(server.port, "HEAD", partial).status == 404


@pytest.mark.time_limit(120)
def test_paused_gateway_mid_patch_answers_503_and_loses_no_acknowledged_byte(rgw, bucket, s3_servers):
    server = s3_servers(bucket, "--s3-timeout", "2")
    data = os.urandom(3 * PART)
    path = create_upload(server.port, len(data))
    answer = patch(server.port, path, 0, data[:PART + MiB])
    assert answer is not None and answer.status == 204
    acknowledged = int(answer.header("Upload-Offset"))
    sock = send_partial_patch(server.port, path, acknowledged, len(data) - acknowledged, data[acknowledged:acknowledged + 2 * MiB])
    time.sleep(0.5)
    rgw.pause()
    try:
        sock.settimeout(60)
        try:
            sock.sendall(data[acknowledged + 2 * MiB:])
        except OSError:
            pass  # the server may answer and close before taking everything
        reply = b""
        started = time.monotonic()
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
        assert status is not None and status >= 500, reply[:300]
        assert time.monotonic() - started < 50
    finally:
        rgw.resume()
        sock.close()
    # Recovery: the gateway is back, HEAD answers, the offset kept what was acknowledged, the upload finishes.
    deadline = time.monotonic() + 30
    offset = None
    while time.monotonic() < deadline:
        response = request(server.port, "HEAD", path)
        if response is not None and response.status == 200:
            offset = int(response.header("Upload-Offset"))
            break
        time.sleep(0.5)
    assert offset is not None and offset >= acknowledged
    assert offset <= durable_prefix(rgw.client(), bucket, upload_id(path), data)
    answer = patch(server.port, path, offset, data[offset:])
    assert answer is not None and answer.status == 204, answer
    assert_landed(rgw, bucket, path, data)


def test_two_instances_with_redis_share_one_bucket(rgw, bucket, s3_servers, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        first = s3_servers(bucket, "--redis", redis.url, "--redis-prefix", "s3test:")
        second = s3_servers(bucket, "--redis", redis.url, "--redis-prefix", "s3test:")
        data = os.urandom(2 * PART + 4321)
        path = create_upload(first.port, len(data))
        half = PART + MiB
        answer = patch(first.port, path, 0, data[:half])
        assert answer is not None and answer.status == 204
        assert head_offset(second.port, path) == half
        answer = patch(second.port, path, half, data[half:])
        assert answer is not None and answer.status == 204
        assert_landed(rgw, bucket, path, data, state_in_bucket=False)
        assert head_offset(first.port, path) == len(data)
        served = request(first.port, "GET", path)
        assert served is not None and sha256(served.body) == sha256(data)
        assert request(second.port, "DELETE", path).status == 204
        assert keys(rgw.client(), bucket, upload_id(path)) == {}
        assert multipart_uploads(rgw.client(), bucket) == []
    finally:
        redis.stop()


class FaultyProxy:
    """A transparent HTTP/1.1 proxy in front of the gateway (the Host header is passed through, so signatures stay
    valid) that fails chosen UploadPart attempts: `faults` maps the attempt number (1-based, over all part uploads)
    to "503" (a SlowDown answer, body read first) or "reset" (the connection is dropped after the body)."""

    def __init__(self, target: str, faults: dict[int, str]):
        import http.client
        import http.server
        import threading
        import urllib.parse

        parsed = urllib.parse.urlsplit(target)
        proxy = self
        self.faults = faults
        self.part_attempts = 0
        self.injected: list[str] = []
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = None
                if "partNumber=" in self.path:
                    with proxy.lock:
                        proxy.part_attempts += 1
                        fault = proxy.faults.get(proxy.part_attempts)
                        if fault:
                            proxy.injected.append(fault)
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "503":
                    text = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                upstream = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    upstream.putheader(name, value)
                upstream.endheaders(body)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_part_uploads_are_retried_after_throttling_and_resets(rgw, bucket, s3_servers):
    """S3 answering SlowDown or dropping the connection costs a retry (from the spill file), not the upload."""
    proxy = FaultyProxy(rgw.endpoint, {1: "503", 3: "reset", 4: "503"})
    try:
        server = s3_servers(bucket, "--s3-timeout", "5")
        # Point this instance at the proxy: same bucket, same credentials.
        server.stop()
        args = rgw.server_args(bucket, "--s3-timeout", "5")
        args[args.index(rgw.endpoint)] = proxy.endpoint
        server.extra_args = args
        server.start()
        data = os.urandom(3 * PART + 4321)
        path = create_upload(server.port, len(data))
        answer = patch(server.port, path, 0, data)
        assert answer is not None and answer.status == 204, answer
        assert proxy.injected == ["503", "reset", "503"]
        assert proxy.part_attempts >= 4 + 3
        assert_landed(rgw, bucket, path, data)
    finally:
        proxy.stop()


def draft_headers(**extra: str) -> dict[str, str]:
    return {"Upload-Draft-Interop-Version": "6", **{k.replace("_", "-"): v for k, v in extra.items()}}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_draft_uploads_land_in_the_bucket(rgw, bucket, s3_servers, chunked):
    """draft-ietf-httpbis-resumable-upload on the S3 store: an incomplete creation, then an append that completes
    the upload where its body ends (chunked: the length becomes known only then, and the last part still lands)."""
    server = s3_servers(bucket)
    data = os.urandom(PART + 3 * MiB + 321)
    first = data[:2 * MiB]
    # `requests` would take the creation's 104 for the final response (http.client skips only 100).
    status, headers, text, informational = draft_request(
        server.port, "POST", "/files/", draft_headers(Upload_Complete="?0"), first)
    assert status == 201 and headers["upload-offset"] == str(len(first)), text
    assert [code for code, _ in informational] == [104]
    url = headers["location"]
    rest = data[len(first):]
    body = (rest[i:i + MiB] for i in range(0, len(rest), MiB)) if chunked else rest
    appended = requests.patch(url, data=body, timeout=60, headers=draft_headers(
        Upload_Offset=str(len(first)), Upload_Complete="?1", Content_Type="application/partial-upload"))
    assert appended.status_code == 201 and appended.headers["Upload-Complete"] == "?1", appended.text
    assert appended.headers["Upload-Offset"] == str(len(data))
    assert_landed(rgw, bucket, url, data)
    served = requests.get(url, timeout=30)
    assert served.status_code == 200 and sha256(served.content) == sha256(data)
