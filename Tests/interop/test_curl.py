"""curl as a subprocess: the HTTP details browsers and proxies exercise (100-continue, chunked bodies, method
override, ranges, CORS)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from tus_helpers import TusServer, create_upload, request

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$")


class CurlResult:
    def __init__(self, output: bytes):
        # With -i curl prints every response head (100 Continue included), then the final body.
        self.blocks: list[tuple[int, dict[str, str]]] = []
        rest = output
        while rest.startswith(b"HTTP/"):
            head, _, rest = rest.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.blocks.append((int(lines[0].split(" ")[1]), headers))
        self.body = rest

    @property
    def status(self) -> int:
        return self.blocks[-1][0]

    @property
    def statuses(self) -> list[int]:
        return [status for status, _ in self.blocks]

    def header(self, name: str) -> str | None:
        return self.blocks[-1][1].get(name.lower())


def curl(*args: str) -> CurlResult:
    completed = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "20", "-H", "Tus-Resumable: 1.0.0", *args],
        capture_output=True, timeout=30)
    assert completed.returncode == 0, completed.stderr.decode()
    return CurlResult(completed.stdout)


def test_creation_with_upload_and_expect_100_continue(server: TusServer, tmp_path: pathlib.Path):
    data = os.urandom(256 * 1024)
    (tmp_path / "body").write_bytes(data)
    result = curl(
        "-X", "POST", "-H", f"Upload-Length: {len(data) + 10}", "-H", "Content-Type: application/offset+octet-stream",
        "-H", "Expect: 100-continue", "-H", "Upload-Metadata: filename Ym9keQ==", "--data-binary", f"@{tmp_path / 'body'}",
        server.endpoint)
    assert result.statuses == [100, 201]
    assert result.header("Upload-Offset") == str(len(data))
    location = result.header("Location")
    assert location and location.startswith(server.endpoint)
    assert IMF_FIXDATE.match(result.header("Upload-Expires") or ""), "unfinished uploads announce their expiry"
    assert server.data_file(location).read_bytes() == data


def test_rejected_creation_with_expect_sends_no_100(server: TusServer, tmp_path: pathlib.Path):
    (tmp_path / "body").write_bytes(b"x" * 1000)
    before = len(server.info_files())
    result = curl(
        "-X", "POST", "-H", "Upload-Length: 10", "-H", "Content-Type: application/offset+octet-stream",
        "-H", "Expect: 100-continue", "--data-binary", f"@{tmp_path / 'body'}", server.endpoint)
    assert result.statuses == [413], "a final answer instead of 100 Continue"
    assert len(server.info_files()) == before


def test_chunked_patch(server: TusServer, tmp_path: pathlib.Path):
    data = os.urandom(700_000)
    (tmp_path / "body").write_bytes(data)
    path = create_upload(server.port, len(data))
    result = curl(
        "-X", "PATCH", "-H", "Transfer-Encoding: chunked", "-H", "Upload-Offset: 0",
        "-H", "Content-Type: application/offset+octet-stream", "--data-binary", f"@{tmp_path / 'body'}",
        server.url(path))
    assert result.status == 204
    assert result.header("Upload-Offset") == str(len(data))
    assert result.header("Tus-Resumable") == "1.0.0"
    assert server.data_file(path).read_bytes() == data


def test_method_override_patch_and_delete_via_post(server: TusServer):
    path = create_upload(server.port, 11)
    patched = curl(
        "-X", "POST", "-H", "X-HTTP-Method-Override: PATCH", "-H", "Upload-Offset: 0",
        "-H", "Content-Type: application/offset+octet-stream", "--data-binary", "hello world", server.url(path))
    assert patched.status == 204
    assert patched.header("Upload-Offset") == "11"
    assert server.data_file(path).read_bytes() == b"hello world"
    deleted = curl("-X", "POST", "-H", "X-HTTP-Method-Override: DELETE", server.url(path))
    assert deleted.status == 204
    assert deleted.header("Tus-Resumable") == "1.0.0"
    assert curl("-I", server.url(path)).status in (404, 410)
    assert not server.data_file(path).exists()


def test_head_fields(server: TusServer):
    metadata = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
    path = create_upload(server.port, 100, metadata)
    result = curl("-I", server.url(path))
    assert result.status == 200
    assert result.header("Upload-Offset") == "0"
    assert result.header("Upload-Length") == "100"
    assert result.header("Upload-Metadata") == metadata
    assert result.header("Cache-Control") == "no-store"
    assert result.header("Tus-Resumable") == "1.0.0"
    assert result.header("Upload-Defer-Length") is None
    assert IMF_FIXDATE.match(result.header("Upload-Expires") or "")
    assert result.body == b""
    deferred = create_upload(server.port, None)
    result = curl("-I", server.url(deferred))
    assert result.header("Upload-Defer-Length") == "1"
    assert result.header("Upload-Length") is None
    missing = curl("-I", server.url("/files/0123456789abcdef0123456789abcdef"))
    assert missing.status == 404
    assert missing.header("Upload-Offset") is None


def test_get_with_range(server: TusServer):
    content = b"0123456789abcdefghij"
    path = create_upload(server.port, len(content))
    assert request(server.port, "PATCH", path, {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}, content).status == 204
    full = curl(server.url(path))
    assert full.status == 200 and full.body == content
    first = curl("-H", "Range: bytes=0-4", server.url(path))
    assert first.status == 206
    assert first.header("Content-Range") == "bytes 0-4/20"
    assert first.body == b"01234"
    suffix = curl("-r", "-3", server.url(path))
    assert suffix.status == 206 and suffix.body == b"hij"
    assert curl("-H", "Range: bytes=20-", server.url(path)).status == 416


def test_cors_preflight_and_exposed_headers(server: TusServer):
    preflight = curl(
        "-X", "OPTIONS", "-H", "Origin: https://app.example", "-H", "Access-Control-Request-Method: PATCH",
        "-H", "Access-Control-Request-Headers: upload-offset, content-type, tus-resumable", server.endpoint)
    assert preflight.status in (200, 204)
    assert preflight.header("Access-Control-Allow-Origin") in ("*", "https://app.example")
    methods = {m.strip() for m in (preflight.header("Access-Control-Allow-Methods") or "").split(",")}
    assert {"POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"} <= methods
    allowed = {h.strip().lower() for h in (preflight.header("Access-Control-Allow-Headers") or "").split(",")}
    assert {"upload-offset", "content-type", "tus-resumable", "upload-length", "upload-metadata",
            "x-http-method-override", "upload-checksum", "upload-defer-length"} <= allowed
    assert int(preflight.header("Access-Control-Max-Age") or "0") > 0
    post = curl("-X", "POST", "-H", "Origin: https://app.example", "-H", "Upload-Length: 1", server.endpoint)
    assert post.status == 201
    exposed = {h.strip().lower() for h in (post.header("Access-Control-Expose-Headers") or "").split(",")}
    assert {"location", "upload-offset", "upload-length", "upload-metadata", "upload-expires", "tus-resumable",
            "tus-version", "tus-extension", "tus-max-size", "tus-checksum-algorithm", "upload-defer-length"} <= exposed


def test_options_capabilities(server: TusServer):
    result = curl("-X", "OPTIONS", server.endpoint)
    assert result.status in (200, 204)
    assert result.header("Tus-Version") == "1.0.0"
    extensions = (result.header("Tus-Extension") or "").split(",")
    assert set(extensions) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination", "concatenation",
        "concatenation-unfinished", "checksum", "checksum-trailer", "expiration"}, "all nine extensions on the file store"
    assert "sha1" in (result.header("Tus-Checksum-Algorithm") or "").split(",")
