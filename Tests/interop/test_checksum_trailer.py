"""checksum-trailer against the real binary, with the exact bytes on the wire: a chunked PATCH announcing
`Trailer: Upload-Checksum` whose digest follows the last chunk (no client library sends trailers)."""

from __future__ import annotations

import base64
import hashlib
import os

from tus_helpers import OFFSET_STREAM, RawConnection, TusServer, create_upload, head_offset, request


def chunked_patch(port: int, path: str, offset: int, body: bytes, trailer: str | None) -> int:
    with RawConnection(port) as connection:
        head = (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OFFSET_STREAM}\r\n"
            f"Upload-Offset: {offset}\r\nTransfer-Encoding: chunked\r\nTrailer: Upload-Checksum\r\n\r\n").encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536]) for i in range(0, len(body), 65536))
        trailers = f"Upload-Checksum: {trailer}\r\n".encode() if trailer is not None else b""
        assert connection.send(head + chunks + b"0\r\n" + trailers + b"\r\n")
        response = connection.read_response()
        assert response is not None
        return response.status


def digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def test_options_advertise_checksum_trailer(server: TusServer):
    response = request(server.port, "OPTIONS", "/files/")
    assert "checksum-trailer" in (response.header("Tus-Extension") or "").split(",")


def test_trailer_digest_is_verified_like_the_header(server: TusServer):
    data = os.urandom(700 * 1024 + 3)
    path = create_upload(server.port, len(data))
    first, second = data[:300 * 1024], data[300 * 1024:]
    assert chunked_patch(server.port, path, 0, first, digest("sha256", first[:-1] + b"\0")) == 460
    assert head_offset(server.port, path) == 0, "mismatch: chunk discarded"
    assert chunked_patch(server.port, path, 0, first, None) == 460
    assert head_offset(server.port, path) == 0, "announced trailer missing: chunk discarded"
    assert chunked_patch(server.port, path, 0, first, "sha1 not-base64!") == 400
    assert head_offset(server.port, path) == 0
    assert chunked_patch(server.port, path, 0, first, digest("sha256", first)) == 204
    assert chunked_patch(server.port, path, len(first), second, digest("md5", second)) == 204
    assert head_offset(server.port, path) == len(data)
    assert hashlib.sha256(request(server.port, "GET", path).body).digest() == hashlib.sha256(data).digest()
