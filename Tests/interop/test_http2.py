"""HTTP/2 (ALPN h2 over TLS, h2c with prior knowledge): curl --http2 and a Python `h2` client against the real
tus-server binary. Certificates come from test_tls's fixtures; servers are stopped by PID; every wait is bounded."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

import hpack
import h2.settings
import hyperframe.frame
import pytest

from h2_helpers import H2Client
from test_tls import Server, pki, run, s_client  # noqa: F401  (pki is a fixture)
from tus_helpers import wait_until

MiB = 1024 * 1024
TUS = {"tus-resumable": "1.0.0"}
PATCH_HEADERS = {**TUS, "content-type": "application/offset+octet-stream"}


@pytest.fixture
def h2_server(pki):
    directory, (pem, key), _ = pki
    server = Server("--tls-certificate", str(pem), "--tls-key", str(key), "--body-timeout", "2")
    yield server
    server.stop()


def ca(pki) -> str:
    return str(pki[0] / "ca.pem")


def create(client: H2Client, length: int) -> str:
    stream = client.get(client.request("POST", "/files/", {**TUS, "upload-length": str(length)}))
    assert stream.status == 201, stream
    location = stream.headers["location"]
    assert location.startswith("https://")
    return "/" + location.split("/", 3)[3]


def test_alpn_prefers_h2_and_still_speaks_http11(h2_server, pki):
    both = s_client(h2_server.port, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: h2" in both.stdout
    old = s_client(h2_server.port, "-alpn", "http/1.1")
    assert "ALPN protocol: http/1.1" in old.stdout
    directory, (pem, key), _ = pki
    off = Server("--tls-certificate", str(pem), "--tls-key", str(key), "--http2", "off")
    try:
        assert "ALPN protocol: http/1.1" in s_client(off.port, "-alpn", "h2,http/1.1").stdout
    finally:
        off.stop()


def test_curl_http2_create_patch_head_get_delete(h2_server, pki, tmp_path):
    data = os.urandom(3 * MiB + 17)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    base = f"https://localhost:{h2_server.port}/files/"

    def curl(*args):
        result = run("curl", "-sS", "--http2", "--cacert", ca(pki), "-H", "Tus-Resumable: 1.0.0", *args,
                     timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    created = curl("-i", "-X", "POST", "-H", f"Upload-Length: {len(data)}", base)
    assert created.startswith("HTTP/2 201"), created
    location = next(line.split(" ", 1)[1].strip() for line in created.splitlines()
                    if line.lower().startswith("location:"))
    patched = curl("-i", "-X", "PATCH", "-H", "Upload-Offset: 0", "-H",
                   "Content-Type: application/offset+octet-stream", "--data-binary", f"@{source}", location)
    assert patched.startswith("HTTP/2 204"), patched
    assert f"upload-offset: {len(data)}" in patched
    head = curl("-I", location)
    assert head.startswith("HTTP/2 200") and f"upload-length: {len(data)}" in head, head
    whole = subprocess.run(["curl", "-sS", "--http2", "--cacert", ca(pki), "-w", "%{http_version}", location],
                           capture_output=True, timeout=60)
    assert whole.stdout[-1:] == b"2"
    assert hashlib.sha256(whole.stdout[:-1]).hexdigest() == hashlib.sha256(data).hexdigest()
    ranged = subprocess.run(["curl", "-sS", "--http2", "--cacert", ca(pki), "-H", "Range: bytes=1000-1999",
                             location], capture_output=True, timeout=60)
    assert ranged.stdout == data[1000:2000]
    deleted = curl("-i", "-X", "DELETE", location)
    assert deleted.startswith("HTTP/2 204"), deleted
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-I", location) in ("404", "410")


@pytest.mark.time_limit(120)
def test_many_uploads_of_many_chunks_as_concurrent_streams_on_one_connection(h2_server, pki):
    uploads, chunk, chunks = 8, 128 * 1024, 12
    datas = [os.urandom(chunk * chunks) for _ in range(uploads)]
    with H2Client(h2_server.port, ca(pki)) as client:
        paths = [create(client, len(data)) for data in datas]
        for index in range(chunks):
            # One PATCH per upload, all open at once; their DATA frames interleave on the connection.
            streams = [client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": str(index * chunk),
                                                      "content-length": str(chunk)}, end_stream=False)
                       for path in paths]
            sent = [0] * uploads
            while min(sent) < chunk:
                for n, stream_id in enumerate(streams):
                    size = min(client.sendable(stream_id), chunk - sent[n], 16 * 1024)
                    if size > 0:
                        start = index * chunk + sent[n]
                        client.conn.send_data(stream_id, datas[n][start:start + size],
                                              end_stream=sent[n] + size == chunk)
                        sent[n] += size
                client.flush()
                client.pump(0.01)
            for n, stream_id in enumerate(streams):
                response = client.get(stream_id, timeout=30)
                assert response.status == 204, (index, n, response)
                assert response.headers["upload-offset"] == str((index + 1) * chunk)
        # Concurrent downloads on the same connection, and a ranged one.
        gets = [client.request("GET", path) for path in paths]
        ranged = client.request("GET", paths[0], {"range": "bytes=5-9"})
        for data, stream_id in zip(datas, gets):
            response = client.get(stream_id, timeout=30)
            assert response.status == 200
            assert hashlib.sha256(response.data).digest() == hashlib.sha256(data).digest()
        assert bytes(client.get(ranged).data) == datas[0][5:10]


def test_settings_and_windows_are_sized_for_uploads(h2_server, pki):
    with H2Client(h2_server.port, ca(pki)) as client:
        client.wait(lambda: client.remote_settings_seen, what="server SETTINGS")
        client.wait(lambda: any(sid == 0 for sid, _ in client.window_updates), what="connection WINDOW_UPDATE")
        remote = client.conn.remote_settings
        assert remote.initial_window_size == 4 * MiB
        assert remote.max_concurrent_streams == 100
        assert remote.max_frame_size == 64 * 1024
        assert remote.max_header_list_size == 16 * 1024
        assert client.conn.outbound_flow_control_window == 8 * MiB


def test_upload_larger_than_the_windows_reopens_them_as_bytes_are_written(h2_server, pki):
    data = os.urandom(12 * MiB)
    with H2Client(h2_server.port, ca(pki)) as client:
        path = create(client, len(data))
        stream_id = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0"}, body=data)
        response = client.get(stream_id, timeout=60)
        assert response.status == 204 and response.headers["upload-offset"] == str(len(data))
        # The window never exceeded what the server granted: 4 MiB up front, the rest by WINDOW_UPDATE.
        granted = 4 * MiB + sum(delta for sid, delta in client.window_updates if sid == stream_id)
        assert granted >= len(data)
        assert granted <= len(data) + 4 * MiB


def test_lock_takeover_ends_the_first_stream_with_the_http11_answer(h2_server, pki):
    data = os.urandom(4 * MiB)
    with H2Client(h2_server.port, ca(pki)) as client:
        path = create(client, len(data))
        first = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0",
                                               "content-length": str(len(data))}, end_stream=False)
        client.send_body(first, data[:MiB // 2], end_stream=False)
        time.sleep(0.3)
        client.pump(0.1)
        # Newest request wins: the second PATCH asks the holder to let go.
        with H2Client(h2_server.port, ca(pki)) as other:
            head = other.get(other.request("HEAD", path, TUS))
            offset = int(head.headers["upload-offset"])
            second = other.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": str(offset),
                                                   "content-length": "0"}, end_stream=True)
            client.wait(lambda: client.done(first), what="first stream's answer")
            answer = client.streams[first]
            assert answer.status == 400, answer
            assert b"ERR_UPLOAD_INTERRUPTED" in answer.data or answer.status == 400
            assert other.get(second).status in (204, 409)
        # The connection carries on.
        assert client.get(client.request("OPTIONS", "/files/")).status == 204


def test_oversized_header_list_gets_431_and_the_connection_survives(h2_server, pki):
    with H2Client(h2_server.port, ca(pki)) as client:
        big = client.request("HEAD", "/files/x", {**TUS, "x-big": "a" * (20 * 1024)})
        assert client.get(big).status == 431
        assert client.get(client.request("OPTIONS", "/files/")).status == 204


def test_stream_that_never_sends_its_body_is_reset_after_the_body_timeout(h2_server, pki):
    with H2Client(h2_server.port, ca(pki)) as client:
        path = create(client, 1000)
        stalled = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0", "content-length": "1000"},
                                 end_stream=False)
        client.send_body(stalled, b"x" * 100, end_stream=False)
        started = time.monotonic()
        client.wait(lambda: client.done(stalled), timeout=10, what="reset of the stalled stream")
        assert client.streams[stalled].reset == 8  # CANCEL
        assert 1.5 <= time.monotonic() - started <= 6
        head = client.get(client.request("HEAD", path, TUS))
        assert head.headers["upload-offset"] == "100"  # what arrived was kept


@pytest.mark.time_limit(60)
def test_rapid_reset_closes_the_connection(h2_server, pki):
    with H2Client(h2_server.port, ca(pki)) as client:
        # A few cancellations are normal (a browser navigating away): under the burst the connection lives on.
        for _ in range(50):
            stream_id = client.request("HEAD", "/files/x", TUS, end_stream=False)
            client.conn.reset_stream(stream_id)
            client.flush()
        assert client.get(client.request("OPTIONS", "/files/")).status == 204
        assert client.terminated is None
        # Hundreds at once is the CVE-2023-44487 pattern: the server ends the connection.
        for _ in range(400):
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, [(":method", "HEAD"), (":path", "/files/x"), (":scheme", "https"),
                                                 (":authority", "localhost"), ("tus-resumable", "1.0.0")])
            client.conn.reset_stream(stream_id)
            try:
                client.flush()
            except OSError:
                break
        deadline = time.monotonic() + 10
        while client.pump(0.1) and client.terminated is None and time.monotonic() < deadline:
            pass
        assert client.terminated is not None or client.closed
        if client.terminated is not None:
            assert client.terminated.error_code != 0
    # The server itself is fine.
    with H2Client(h2_server.port, ca(pki)) as fresh:
        assert fresh.get(fresh.request("OPTIONS", "/files/")).status == 204


def test_continuation_flood_closes_the_connection(h2_server, pki):
    with H2Client(h2_server.port, ca(pki)) as client:
        client.wait(lambda: client.remote_settings_seen, what="server SETTINGS")
        block = hpack.Encoder().encode([(":method", "HEAD"), (":path", "/files/x"), (":scheme", "https"),
                                        (":authority", "localhost")] + [(f"x-{i}", "v" * 50) for i in range(300)])
        pieces = [block[i:i + 64] for i in range(0, len(block), 64)]
        frames = [hyperframe.frame.HeadersFrame(1, data=pieces[0], flags=["END_STREAM"])]
        frames += [hyperframe.frame.ContinuationFrame(1, data=piece) for piece in pieces[1:]]
        try:
            client.sock.sendall(b"".join(frame.serialize() for frame in frames))
        except OSError:
            pass
        client.conn = __import__("h2.connection").connection.H2Connection()  # our state machine is out of step now
        deadline = time.monotonic() + 10
        closed = False
        client.sock.settimeout(0.5)
        while time.monotonic() < deadline and not closed:
            try:
                closed = not client.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                closed = True
        assert len(pieces) > 9, "the header block needs more CONTINUATION frames than allowed (8)"
        assert closed, "the server closes a connection that floods CONTINUATION frames"
    with H2Client(h2_server.port, ca(pki)) as fresh:
        assert fresh.get(fresh.request("OPTIONS", "/files/")).status == 204


@pytest.mark.time_limit(60)
def test_goaway_on_shutdown_lets_the_stream_in_flight_finish(pki):
    directory, (pem, key), _ = pki
    server = Server("--tls-certificate", str(pem), "--tls-key", str(key), "--shutdown-timeout", "20")
    try:
        data = os.urandom(2 * MiB)
        with H2Client(server.port, ca(pki)) as client:
            path = create(client, len(data))
            stream_id = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0",
                                                       "content-length": str(len(data))}, end_stream=False)
            client.send_body(stream_id, data[:MiB], end_stream=False)
            # A request answered after the PATCH's HEADERS proves the server has taken that stream in; a SIGTERM
            # sent before it could read them would rightly leave the stream out of the GOAWAY.
            assert client.get(client.request("OPTIONS", "/files/")).status == 204
            os.kill(server.process.pid, signal.SIGTERM)
            client.wait(lambda: client.terminated is not None, what="GOAWAY")
            assert client.terminated.error_code == 0
            assert client.terminated.last_stream_id >= stream_id
            client.send_body(stream_id, data[MiB:], end_stream=True)
            response = client.get(stream_id, timeout=20)
            assert response.status == 204 and response.headers["upload-offset"] == str(len(data))
        assert server.process.wait(timeout=20) == 0
    finally:
        server.stop()


def test_h2c_prior_knowledge_and_http11_share_the_port(tmp_path):
    from tus_helpers import TusServer, request
    server = TusServer(tmp_path / "up", "--h2c").start()
    try:
        with H2Client(server.port, tls=False) as client:
            assert client.get(client.request("OPTIONS", "/files/")).status == 204
            stream = client.get(client.request("POST", "/files/", {**TUS, "upload-length": "5"}))
            assert stream.status == 201 and stream.headers["location"].startswith("http://")
        assert request(server.port, "OPTIONS", "/files/").status == 204
    finally:
        assert server.stop() == 0


# Stalled and trickling streams (issue 15). Short timeouts keep them bounded: a stream whose body or response makes
# no progress for 2 s is reset, and a body must average 1000 bytes/s over each 2 s window.
STALL_ARGS = ("--body-timeout", "2", "--min-body-rate", "1000")
CANCEL = 8


@pytest.fixture
def stall_server(pki, server_factory):
    """A TLS server with short stall limits, logging to a file (the reason a stream was reset is checked)."""
    directory, (pem, key), _ = pki
    return server_factory("--tls-certificate", str(pem), "--tls-key", str(key), *STALL_ARGS)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def patch_over_http11(port: int, cafile: str, path: str, block: bytes, repeat: int) -> None:
    """Uploads `block` `repeat` times as one HTTP/1.1 PATCH over TLS: hundreds of MiB in seconds, which the
    pure-Python h2 client cannot do."""
    length = len(block) * repeat
    head = (f"PATCH {path} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n").encode()
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(head)
        for _ in range(repeat):
            sock.sendall(block)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(4096)
            assert piece, f"connection closed before the PATCH answer: {answer!r}"
            answer += piece
    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert f"upload-offset: {length}".encode() in answer.lower(), answer


def trickle(client: H2Client, stream_id: int, piece: bytes, interval: float, limit: float) -> int:
    """Sends `piece` every `interval` seconds until the server ends the stream (or `limit` seconds passed).
    Returns how many bytes were sent."""
    sent = 0
    started = next_piece = time.monotonic()
    while not client.done(stream_id) and time.monotonic() - started < limit:
        if time.monotonic() >= next_piece:
            # Paced by the clock: a pump returns early when a frame arrives.
            next_piece += interval
            client.conn.send_data(stream_id, piece)
            client.flush()
            sent += len(piece)
        client.pump(0.05)
    return sent


@pytest.mark.time_limit(40)
def test_stream_trickling_its_body_below_the_minimum_rate_is_reset_and_keeps_its_bytes(stall_server, pki):
    with H2Client(stall_server.port, ca(pki)) as client:
        length = 100_000
        path = create(client, length)
        slow = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0", "content-length": str(length)},
                              end_stream=False)
        started = time.monotonic()
        # 50 bytes/s, a piece every 0.2 s: never idle for the 2 s body timeout, far below 1000 bytes/s.
        sent = trickle(client, slow, b"a" * 10, interval=0.2, limit=10)
        elapsed = time.monotonic() - started
        assert client.streams[slow].reset == CANCEL, client.streams[slow]
        assert 1.5 <= elapsed <= 6, f"a 50 bytes/s body was cut after {elapsed:.1f}s (window 2 s)"
        assert "body slower than 1000 bytes/s" in stall_server.log_text()
        # The connection carries on; what arrived was kept, and the upload resumes from there.
        assert client.get(client.request("OPTIONS", "/files/")).status == 204
        head = client.get(client.request("HEAD", path, TUS))
        kept = int(head.headers["upload-offset"])
        assert 0 < kept <= sent
        rest = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": str(kept)}, body=b"b" * (length - kept))
        response = client.get(rest)
        assert response.status == 204 and response.headers["upload-offset"] == str(length)


@pytest.mark.time_limit(40)
def test_slow_stream_above_the_minimum_rate_completes(stall_server, pki):
    pieces, piece = 30, b"b" * 400  # about 4000 bytes/s for 3 s: longer than one rate window
    with H2Client(stall_server.port, ca(pki)) as client:
        path = create(client, pieces * len(piece))
        stream_id = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0",
                                                   "content-length": str(pieces * len(piece))}, end_stream=False)
        for n in range(pieces):
            client.conn.send_data(stream_id, piece, end_stream=n == pieces - 1)
            client.flush()
            client.pump(0.1)
        response = client.get(stream_id)
        assert response.status == 204 and response.headers["upload-offset"] == str(pieces * len(piece))


@pytest.mark.time_limit(180)
def test_download_to_streams_that_never_open_their_window_is_bounded_and_reset(stall_server, pki):
    """256 MiB downloaded by streams whose client never opens its window: the server holds one read piece per
    stream, not the file; it resets them after the body timeout; the connection's other streams and other
    connections are served meanwhile."""
    block, repeat = os.urandom(MiB), 256
    with H2Client(stall_server.port, ca(pki)) as setup:
        big = create(setup, len(block) * repeat)
    patch_over_http11(stall_server.port, ca(pki), big, block, repeat)
    time.sleep(0.5)
    pid = stall_server.pid
    baseline_rss, baseline_fds = rss_bytes(pid), open_fds(pid)

    window = 16 * 1024
    with H2Client(stall_server.port, ca(pki), settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window},
                  opens_windows=False) as client:
        stalled = [client.request("GET", big) for _ in range(3)]
        started = time.monotonic()
        peak_rss = baseline_rss

        def sample() -> None:
            nonlocal peak_rss
            peak_rss = max(peak_rss, rss_bytes(pid))

        # Meanwhile, on the same connection: an upload and a download whose window the client does open.
        small = os.urandom(MiB)
        path = create(client, len(small))
        patched = client.get(client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0"}, body=small))
        assert patched.status == 204, patched
        fetch = client.request("GET", path)
        client.conn.increment_flow_control_window(len(small), stream_id=fetch)
        client.flush()
        fetched = client.get(fetch)
        assert fetched.status == 200 and bytes(fetched.data) == small
        sample()
        # And on another connection: a range of the stalled file.
        with H2Client(stall_server.port, ca(pki)) as other:
            ranged = other.get(other.request("GET", big, {"range": f"bytes={5 * MiB - 10}-{5 * MiB + 9}"}))
            assert ranged.status == 206 and bytes(ranged.data) == block[-10:] + block[:10]
        sample()

        client.wait(lambda: (sample(), all(client.done(s) for s in stalled))[1], timeout=10,
                    what="reset of the stalled downloads")
        elapsed = time.monotonic() - started
        for stream_id in stalled:
            stream = client.streams[stream_id]
            assert stream.status == 200 and stream.headers["content-length"] == str(len(block) * repeat)
            assert stream.reset == CANCEL, stream
            assert len(stream.data) <= window
        assert 1.5 <= elapsed <= 8, f"stalled downloads were reset after {elapsed:.1f}s (body timeout 2 s)"
        growth = peak_rss - baseline_rss
        assert growth < 16 * MiB, f"server RSS grew {growth / MiB:.1f} MiB serving stalled downloads"
        # The connection lives on.
        assert client.get(client.request("OPTIONS", "/files/")).status == 204
    # Each reset stream closed its file.
    wait_until(lambda: open_fds(pid) <= baseline_fds, timeout=5, message="stalled downloads' files closed")


@pytest.mark.time_limit(60)
def test_stalled_and_trickling_streams_do_not_hold_up_the_rest_of_their_connection(server_factory, pki):
    """Several stalled streams on one connection (uploads that stop, an upload that trickles, downloads that never
    open their window, a download whose window opens a few bytes at a time): while they are held, a full upload
    and download on the same connection go through; then all of them are reset. A 4 s body timeout leaves the
    healthy pair time to finish first on a loaded machine."""
    directory, (pem, key), _ = pki
    server = server_factory("--tls-certificate", str(pem), "--tls-key", str(key), "--body-timeout", "4",
                            "--min-body-rate", "1000")
    data = os.urandom(4 * MiB)
    with H2Client(server.port, ca(pki)) as setup:
        source = create(setup, len(data))
        uploaded = setup.get(setup.request("PATCH", source, {**PATCH_HEADERS, "upload-offset": "0"}, body=data))
        assert uploaded.status == 204

    with H2Client(server.port, ca(pki), settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0},
                  opens_windows=False) as client:
        silent_paths = [create(client, 1000) for _ in range(2)]
        silent = []
        for path in silent_paths:
            stream_id = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0", "content-length": "1000"},
                                       end_stream=False)
            client.send_body(stream_id, b"s" * 100, end_stream=False)
            silent.append(stream_id)
        trickle_path = create(client, 100_000)
        trickling = client.request("PATCH", trickle_path, {**PATCH_HEADERS, "upload-offset": "0",
                                                           "content-length": "100000"}, end_stream=False)
        closed_windows = [client.request("GET", source) for _ in range(2)]
        slow_reader = client.request("GET", source)
        stalled = silent + [trickling] + closed_windows + [slow_reader]
        started = time.monotonic()

        # The healthy pair on the same connection, interleaved with the trickles.
        fresh = os.urandom(2 * MiB)
        path = create(client, len(fresh))
        upload = client.request("PATCH", path, {**PATCH_HEADERS, "upload-offset": "0"}, body=fresh)
        assert client.get(upload).status == 204
        download = client.request("GET", path)
        client.conn.increment_flow_control_window(len(fresh), stream_id=download)
        client.flush()
        assert bytes(client.get(download).data) == fresh
        healthy_done = time.monotonic() - started
        assert not any(client.done(s) for s in stalled), f"healthy pair done after {healthy_done:.1f}s"

        sent = 0
        next_turn = time.monotonic()
        while not all(client.done(s) for s in stalled) and time.monotonic() - started < 15:
            if time.monotonic() >= next_turn:
                next_turn += 0.25
                if not client.done(trickling):
                    client.conn.send_data(trickling, b"t" * 10)
                    sent += 10
                if not client.done(slow_reader):
                    # 2 KiB/s: a 256 KiB read piece would take two minutes to go out.
                    client.conn.increment_flow_control_window(512, stream_id=slow_reader)
                client.flush()
            client.pump(0.05)
        elapsed = time.monotonic() - started
        for stream_id in stalled:
            assert client.streams[stream_id].reset == CANCEL, (stream_id, client.streams[stream_id])
        assert elapsed <= 10, f"stalled streams were reset only after {elapsed:.1f}s (body timeout 4 s)"
        assert "body slower than 1000 bytes/s" in server.log_text()
        assert len(client.streams[slow_reader].data) < 64 * 1024
        assert client.get(client.request("OPTIONS", "/files/")).status == 204
        for path in silent_paths:
            assert client.get(client.request("HEAD", path, TUS)).headers["upload-offset"] == "100"
        assert 0 < int(client.get(client.request("HEAD", trickle_path, TUS)).headers["upload-offset"]) <= sent
