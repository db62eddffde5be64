"""draft-ietf-httpbis-resumable-upload against the real binary, seen by independent HTTP stacks (`h11`, `h2`), which
parse informational responses: the creation 104 with `Location` goes out before the body is read (rows C4, O5) on
HTTP/1.1 and h2c, an unknown interop version gets none (D3), an HTTP/1.0 client gets none (D8), and a creation cut
off mid-body is resumed byte-exact from the 104's `Location` (C18). Every socket operation has a timeout."""

from __future__ import annotations

import socket
import time
import urllib.request

import h11
import h2.config
import h2.connection
import h2.events
import pytest

from tus_helpers import TusServer


def pattern(count: int) -> bytes:
    return bytes((i * 31 + 7) % 256 for i in range(count))


def h1_creation(port: int, version: int, first: bytes, second: bytes | None, total: int | None = None):
    """POSTs a draft creation, sends `first`, waits for every head it can get until a 104 (or the final response)
    arrived, then sends `second` (None: closes the socket instead, a client cut off mid-body). Returns the heads."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h11.Connection(h11.CLIENT)
    length = total if total is not None else len(first) + len(second or b"")
    request = h11.Request(method="POST", target="/files/", headers=[
        ("Host", "localhost"), ("Content-Length", str(length)), ("Upload-Draft-Interop-Version", str(version)),
        ("Upload-Complete" if version >= 4 else "Upload-Incomplete", "?1" if version >= 4 else "?0")])
    sock.sendall(conn.send(request) + conn.send(h11.Data(data=first)))
    heads = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                if not data:
                    return heads
                conn.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                heads.append((event.status_code, {n.decode().lower(): v.decode() for n, v in event.headers}))
                if second is None:
                    return heads
                sock.sendall(conn.send(h11.Data(data=second)) + conn.send(h11.EndOfMessage()))
            elif isinstance(event, h11.Response):
                heads.append((event.status_code, {n.decode().lower(): v.decode() for n, v in event.headers}))
            elif isinstance(event, h11.EndOfMessage):
                return heads
    finally:
        sock.close()


def request(server: TusServer, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    req = urllib.request.Request(server.url(path), data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@pytest.mark.parametrize("version", range(3, 10))
def test_creation_announces_the_upload_before_its_body_over_http1(server, version):
    body = pattern(300_000)
    heads = h1_creation(server.port, version, body[:1000], body[1000:])
    statuses = [status for status, _ in heads]
    assert statuses[0] == 104 and statuses[-1] == 201, statuses
    first = heads[0][1]
    assert first["upload-draft-interop-version"] == str(version)
    assert first["location"] == heads[-1][1]["location"]
    # Progress 104s (v5+) never repeat Location (C6); v3 and v4 get exactly one (C7).
    assert all("location" not in h for s, h in heads[1:-1])
    if version <= 4:
        assert statuses.count(104) == 1
    path = "/files/" + first["location"].rsplit("/", 1)[1]
    status, headers, _ = request(server, "HEAD", path, {"Upload-Draft-Interop-Version": str(version)})
    assert status == 204 and headers["upload-offset"] == str(len(body))
    status, _, data = request(server, "GET", path, {})
    assert status == 200 and data == body


def test_unknown_interop_version_gets_no_104(server):
    heads = h1_creation(server.port, 10, b"x" * 10, b"")
    assert [s for s, _ in heads] == [400]


def test_http10_client_gets_no_104(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /files/ HTTP/1.0\r\nHost: localhost\r\nUpload-Draft-Interop-Version: 6\r\n"
                 b"Upload-Complete: ?1\r\nContent-Length: 5\r\n\r\nhello")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 201") and b" 104 " not in data, data[:200]


def test_interrupted_creation_is_resumed_byte_exact(server):
    body = pattern(200_000)
    heads = h1_creation(server.port, 6, body[:50_000], None, total=len(body))
    assert heads and heads[0][0] == 104
    path = "/files/" + heads[0][1]["location"].rsplit("/", 1)[1]
    # The cut connection's bytes land shortly after the close: wait for the offset to settle.
    deadline = time.monotonic() + 5
    offset = -1
    while time.monotonic() < deadline:
        status, headers, _ = request(server, "HEAD", path, {"Upload-Draft-Interop-Version": "6"})
        assert status == 204 and headers["upload-complete"] == "?0"
        offset = int(headers["upload-offset"])
        if offset == 50_000:
            break
        time.sleep(0.05)
    assert 0 < offset <= 50_000
    status, headers, _ = request(server, "PATCH", path, {
        "Upload-Draft-Interop-Version": "6", "Upload-Offset": str(offset), "Upload-Complete": "?1",
        "Content-Type": "application/partial-upload"}, body[offset:])
    assert status == 201 and headers["upload-complete"] == "?1" and headers["upload-offset"] == str(len(body))
    status, _, data = request(server, "GET", path, {})
    assert data == body


def test_creation_104_over_h2c(tmp_path):
    server = TusServer(tmp_path / "uploads", "--h2c").start()
    try:
        (tmp_path / "uploads").mkdir(exist_ok=True)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        body = pattern(100_000)
        conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", "/files/"),
                                   (":authority", "localhost"), ("content-length", str(len(body))),
                                   ("upload-draft-interop-version", "9"), ("upload-complete", "?1")])
        sock.sendall(conn.data_to_send())
        heads, sent, ended = [], False, False
        while not ended:
            data = sock.recv(65536)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.InformationalResponseReceived, h2.events.ResponseReceived)):
                    heads.append(dict(event.headers))
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"reset {event.error_code}")
            if heads and not sent:
                # The body goes only after the 104: it was sent before any byte of it was read.
                size = conn.max_outbound_frame_size
                for start in range(0, len(body), size):
                    while conn.local_flow_control_window(stream) < min(size, len(body) - start):
                        sock.sendall(conn.data_to_send())
                        for event in conn.receive_data(sock.recv(65536)):
                            if isinstance(event, (h2.events.InformationalResponseReceived,
                                                  h2.events.ResponseReceived)):
                                heads.append(dict(event.headers))
                    conn.send_data(stream, body[start:start + size], end_stream=start + size >= len(body))
                sent = True
            sock.sendall(conn.data_to_send())
        sock.close()
        assert heads[0][":status"] == "104" and "location" in heads[0]
        assert heads[0]["upload-draft-interop-version"] == "9" and "upload-limit" in heads[0]
        assert heads[-1][":status"] == "201" and heads[-1]["upload-complete"] == "?1"
        path = "/files/" + heads[0]["location"].rsplit("/", 1)[1]
        status, _, data = request(server, "GET", path, {})
        assert status == 200 and data == body
    finally:
        server.stop(grace=5)


def test_creation_reset_mid_body_over_h2c_is_resumed_byte_exact(tmp_path):
    """C18 on HTTP/2: the client resets the creation's stream (RST_STREAM) after the 104 and part of the body; the
    bytes received are kept, the upload is incomplete, and a PATCH from the reported offset completes it."""
    server = TusServer(tmp_path / "uploads", "--h2c").start()
    try:
        body = pattern(300_000)
        sent = 100_000
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", "/files/"),
                                   (":authority", "localhost"), ("content-length", str(len(body))),
                                   ("upload-draft-interop-version", "8"), ("upload-complete", "?1")])
        sock.sendall(conn.data_to_send())
        announced = None
        while announced is None:
            data = sock.recv(65536)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.InformationalResponseReceived):
                    announced = dict(event.headers)
            sock.sendall(conn.data_to_send())
        offset, size = 0, conn.max_outbound_frame_size
        while offset < sent:
            window = min(conn.local_flow_control_window(stream), sent - offset, size)
            if window <= 0:
                for _ in conn.receive_data(sock.recv(65536)):
                    pass
                sock.sendall(conn.data_to_send())
                continue
            conn.send_data(stream, body[offset:offset + window])
            offset += window
            sock.sendall(conn.data_to_send())
        # The reset follows the last DATA frame at once (often in the same read): every byte that arrived intact
        # before it is still stored.
        conn.reset_stream(stream)
        sock.sendall(conn.data_to_send())
        path = "/files/" + announced["location"].rsplit("/", 1)[1]
        draft = {"Upload-Draft-Interop-Version": "8"}
        deadline, stored = time.monotonic() + 5, -1
        while time.monotonic() < deadline:
            status, headers, _ = request(server, "HEAD", path, draft)
            assert status == 204 and headers["upload-complete"] == "?0"
            assert headers["upload-length"] == str(len(body)), "content-length of a complete creation is the length"
            stored = int(headers["upload-offset"])
            if stored == sent:
                break
            time.sleep(0.05)
        sock.close()
        assert stored == sent
        status, headers, _ = request(server, "PATCH", path, {
            **draft, "Upload-Offset": str(stored), "Upload-Complete": "?1",
            "Content-Type": "application/partial-upload"}, body[stored:])
        assert status == 201 and headers["upload-complete"] == "?1"
        status, _, data = request(server, "GET", path, {})
        assert status == 200 and data == body
    finally:
        server.stop(grace=5)


def h1_request(server: TusServer, method: str, path: str, headers: dict[str, str], body: bytes = b""):
    """One request over h11, which skips the 104s (urllib's http.client would take a 104 for the answer)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h11.Connection(h11.CLIENT)
    fields = [("Host", "localhost"), ("Content-Length", str(len(body)))] + list(headers.items())
    sock.sendall(conn.send(h11.Request(method=method, target=path, headers=fields)) + conn.send(h11.Data(data=body))
                 + conn.send(h11.EndOfMessage()))
    response, content = None, b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                assert data, "connection closed before the response ended"
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                return response.status_code, {n.decode().lower(): v.decode() for n, v in response.headers}, content
    finally:
        sock.close()


def draft_patch(server: TusServer, path: str, version: int, offset: int, complete: str, body: bytes):
    return h1_request(server, "PATCH", path, {
        "Upload-Draft-Interop-Version": str(version), "Upload-Offset": str(offset), "Upload-Complete": complete,
        "Content-Type": "application/partial-upload"}, body)


@pytest.mark.parametrize("version", [6, 7, 8])
def test_content_up_to_the_length_waits_for_completion_then_answers_its_digest(server, version):
    """Section 12 and rows G1/G3 on the real binary (file store): content up to `Upload-Length` sent with `?0` leaves
    the upload incomplete; an empty `?1` PATCH completes it, verified against the creation's `Repr-Digest` over the
    stored bytes and answered with the `Repr-Digest` that `Want-Repr-Digest` asked for."""
    import base64
    import hashlib
    whole = pattern(70_000)
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(whole).digest()).decode() + ":"
    status, headers, _ = h1_request(server, "POST", "/files/", {
        "Upload-Draft-Interop-Version": str(version), "Upload-Complete": "?0", "Upload-Length": str(len(whole)),
        "Repr-Digest": digest, "Want-Repr-Digest": "sha-256=5"}, whole[:40_000])
    assert status == 201 and headers["upload-complete"] == "?0", (status, headers)
    path = "/files/" + headers["location"].rsplit("/", 1)[1]
    status, headers, _ = draft_patch(server, path, version, 40_000, "?0", whole[40_000:])
    assert status in (201, 204) and headers["upload-offset"] == str(len(whole)), (status, headers)
    assert headers["upload-complete"] == "?0"
    status, headers, _ = request(server, "HEAD", path, {"Upload-Draft-Interop-Version": str(version)})
    assert (headers["upload-offset"], headers["upload-complete"]) == (str(len(whole)), "?0")
    status, headers, _ = draft_patch(server, path, version, len(whole), "?1", b"")
    assert status == 201 and headers["upload-complete"] == "?1", (status, headers)
    assert headers["repr-digest"] == digest
    status, headers, _ = request(server, "HEAD", path, {"Upload-Draft-Interop-Version": str(version)})
    assert headers["upload-complete"] == "?1"


def test_a_representation_that_misses_its_digest_is_dropped_and_counted(server):
    """Row G1 across requests: the completing PATCH finds the stored bytes unlike the creation's `Repr-Digest`: 400
    with `Upload-Complete: ?1` (v7), the upload is gone, and the error is counted under the draft's protocol label."""
    import hashlib
    import base64
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(b"hello world").digest()).decode() + ":"
    status, headers, _ = h1_request(server, "POST", "/files/", {
        "Upload-Draft-Interop-Version": "7", "Upload-Complete": "?0", "Repr-Digest": digest}, b"hello")
    assert status == 201
    path = "/files/" + headers["location"].rsplit("/", 1)[1]
    status, headers, _ = draft_patch(server, path, 7, 5, "?1", b" WORLD")
    assert status == 400 and headers["upload-complete"] == "?1", (status, headers)
    status, _, _ = request(server, "HEAD", path, {"Upload-Draft-Interop-Version": "7"})
    assert status == 404
    _, _, metrics = request(server, "GET", "/metrics", {})
    assert b'tus_errors_by_protocol_total{protocol="ietf-draft",status="400",code="bad-request"} 1' in metrics
