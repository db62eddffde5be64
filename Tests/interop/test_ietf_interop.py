"""Resumable Uploads for HTTP (the IETF draft) against the real tus-server, from an independent client
(ietf_client.py: h11 for HTTP/1.1, h2 over TLS for HTTP/2) and from tus-cli --protocol ietf. Row numbers (C4, R1,
A11...) are those of docs/IETF-RESUMABLE-UPLOAD.md. Every server is started by these fixtures and stopped by PID;
every wait is bounded."""

from __future__ import annotations

import os
import pathlib
import select
import signal
import socket
import subprocess
import threading
import time

import h11
import pytest

from ietf_client import DraftClient, DraftResponse, path_of
from test_tls import pki  # noqa: F401  (a fixture)
from tus_helpers import TusServer, repo_root, wait_until

VERSIONS = [3, 5, 6, 8, 9]
TRANSPORTS = ["h1", "h2"]


def pattern(count: int, seed: int = 0) -> bytes:
    return bytes(((i * 131 + seed * 7) >> 3) % 251 for i in range(count))


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    instance = TusServer(tmp_path_factory.mktemp("ietf-plain")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):  # noqa: F811
    _, (pem, key), _ = pki
    instance = TusServer(tmp_path_factory.mktemp("ietf-tls"), "--tls-certificate", str(pem), "--tls-key", str(key))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def make_client(request, pki):  # noqa: F811
    """make_client(version, transport) -> (DraftClient, TusServer)."""
    directory = pki[0]

    def make(version, transport: str) -> tuple[DraftClient, TusServer]:
        server = request.getfixturevalue("plain_server" if transport == "h1" else "tls_server")
        cafile = str(directory / "ca.pem") if transport == "h2" else None
        return DraftClient(server.port, version, transport, cafile=cafile), server

    return make


def stored(server: TusServer, url: str) -> bytes:
    return server.data_file(path_of(url)).read_bytes()


def upload_files(server: TusServer) -> set[str]:
    return {entry.name for entry in server.upload_dir.iterdir()}


def check_announcement(response: DraftResponse, version: int) -> str:
    """C4/D5/C6/C7: the first 104 names the upload and the version; later ones never carry Location; v3 and v4
    get exactly one. Returns the announced path."""
    interim = response.interim()
    assert interim, f"no 104 before the final response: {response}"
    first = interim[0]
    assert first.get("location"), first
    for headers in interim:
        assert headers.get("upload-draft-interop-version") == str(version), headers
    for later in interim[1:]:
        assert "location" not in later, f"a progress 104 with Location (C6): {interim}"
    if version in (3, 4):
        assert len(interim) == 1, f"v{version} defines one 104 only (C7): {interim}"
    return path_of(first["location"])


def check_offsets_never_decrease(response: DraftResponse) -> None:
    offsets = [int(h["upload-offset"]) for h in response.interim() if "upload-offset" in h]
    assert offsets == sorted(offsets), offsets


# --- creation ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_creation_with_the_whole_body(make_client, version, transport):
    client, server = make_client(version, transport)
    body = pattern(300_000, seed=version)
    response = client.create("/files/", body, complete=True, length=len(body))
    announced = check_announcement(response, version)
    check_offsets_never_decrease(response)
    assert response.status in (200, 201), response
    assert path_of(response.header("Location") or announced) == announced, "final Location differs from the 104's"
    assert client.is_complete(response) is not False, response  # C11/C12/C13: never "incomplete"
    assert stored(server, announced) == body
    head = client.offset(announced)
    assert 200 <= head.status < 300, head
    assert int(head.header("Upload-Offset")) == len(body)
    assert client.is_complete(head) is True, head  # R10


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_creation_with_part_of_the_body_then_appends(make_client, version, transport):
    client, server = make_client(version, transport)
    body = pattern(250_000, seed=version + 1)
    created = client.create("/files/", body[:100_000], complete=False, length=len(body))
    url = check_announcement(created, version)
    # C8/C9/C10: 201, Location, "incomplete", the offset of what was stored.
    assert created.status == 201, created
    assert path_of(created.header("Location")) == url
    assert client.is_complete(created) is False, created
    assert int(created.header("Upload-Offset")) == 100_000

    head = client.offset(url)
    if version in (3, 4):
        assert head.status == 204, head  # R1
    else:
        assert head.status in (200, 204), head  # R2/R3/R4
    assert int(head.header("Upload-Offset")) == 100_000
    assert client.is_complete(head) is False
    assert "no-store" in (head.header("Cache-Control") or ""), head  # R5
    if version >= 6:
        assert head.header("Upload-Length") == str(len(body)), head  # R2 (-05)/R3/R4
    if version >= 8:
        assert head.header("Upload-Limit"), head  # R3/R4: MUST from v8

    middle = client.append(url, 100_000, body[100_000:180_000], complete=False)
    assert 200 <= middle.status < 300, middle
    if version <= 6:
        assert middle.status == 201, middle  # A4/A6
    assert client.is_complete(middle) is False, middle
    assert int(middle.header("Upload-Offset")) == 180_000

    last = client.append(url, 180_000, body[180_000:], complete=True)
    assert 200 <= last.status < 300, last
    assert client.is_complete(last) is not False, last  # A3/A5/A8
    if version >= 7:
        assert client.is_complete(last) is True, last  # A8: MUST carry Upload-Complete: ?1
    assert stored(server, url) == body
    assert client.is_complete(client.offset(url)) is True


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_creation_without_content(make_client, version, transport):
    """C14: an empty incomplete creation is allowed (offset 0); C15: an empty complete one is a finished upload."""
    client, server = make_client(version, transport)
    careful = client.create("/files/", b"", complete=False, length=5000)
    url = check_announcement(careful, version)
    assert careful.status == 201, careful
    assert int(careful.header("Upload-Offset") or "0") == 0
    assert int(client.offset(url).header("Upload-Offset")) == 0
    body = pattern(5000, seed=3)
    done = client.append(url, 0, body, complete=True)
    assert 200 <= done.status < 300, done
    assert stored(server, url) == body

    empty = client.create("/files/", b"", complete=True, length=0)
    empty_url = check_announcement(empty, version)
    assert 200 <= empty.status < 300, empty
    head = client.offset(empty_url)
    assert int(head.header("Upload-Offset")) == 0
    assert client.is_complete(head) is True, head


# --- interruption and resumption ----------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_connection_cut_mid_creation_body_resumes_byte_exact(make_client, version, transport):
    """C4 + C18: the 104 arrives before the body is read, so a client cut off mid-body knows where to resume;
    the bytes received are kept, HEAD reports them, and an append of the rest yields exactly the file."""
    client, server = make_client(version, transport)
    body = pattern(1_500_000, seed=version + 5)
    cut = client.create("/files/", body, complete=True, length=len(body), cut_after=600_000)
    assert cut.status is None, f"the server answered before the cut: {cut}"
    url = check_announcement(cut, version)

    def offset() -> int:
        return int(client.offset(url).header("Upload-Offset"))

    head = client.offset(url)
    assert 200 <= head.status < 300, head
    resumed_at = int(head.header("Upload-Offset"))
    assert 0 < resumed_at <= 600_000, resumed_at
    assert client.is_complete(head) is False, head
    rest = client.append(url, resumed_at, body[resumed_at:], complete=True)
    assert 200 <= rest.status < 300, rest
    assert offset() == len(body)
    assert stored(server, url) == body


@pytest.mark.parametrize("version", [5, 9])
def test_stream_reset_mid_creation_body_resumes_byte_exact(make_client, version):
    """C18 over HTTP/2: RST_STREAM (CANCEL) mid-body instead of a dead connection keeps the bytes as well."""
    client, server = make_client(version, "h2")
    body = pattern(1_000_000, seed=version + 13)
    cut = client.create("/files/", body, complete=True, length=len(body), cut_after=400_000, reset_stream=True)
    assert cut.status is None, cut
    url = check_announcement(cut, version)
    head = client.offset(url)
    resumed_at = int(head.header("Upload-Offset"))
    assert 0 < resumed_at <= 400_000, resumed_at
    rest = client.append(url, resumed_at, body[resumed_at:], complete=True)
    assert 200 <= rest.status < 300, rest
    assert stored(server, url) == body


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", [3, 6, 9])
def test_connection_cut_mid_append_resumes_byte_exact(make_client, version, transport):
    """A18: an append cut mid-body keeps its bytes; the offset the server reports is accepted by the next append."""
    client, server = make_client(version, transport)
    body = pattern(1_200_000, seed=version + 9)
    created = client.create("/files/", body[:200_000], complete=False, length=len(body))
    url = check_announcement(created, version)
    cut = client.append(url, 200_000, body[200_000:], complete=True, cut_after=500_000)
    assert cut.status is None, cut
    head = client.offset(url)
    resumed_at = int(head.header("Upload-Offset"))
    assert 200_000 <= resumed_at <= 700_000, resumed_at
    rest = client.append(url, resumed_at, body[resumed_at:], complete=True)
    assert 200 <= rest.status < 300, rest
    assert stored(server, url) == body


# --- errors --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_offset_mismatch_is_409_with_the_current_offset(make_client, version, transport):
    client, server = make_client(version, transport)
    body = pattern(3000, seed=1)
    url = check_announcement(client.create("/files/", body[:1000], complete=False, length=3000), version)
    wrong = client.append(url, 500, body[500:], complete=True)
    assert wrong.status == 409, wrong  # A11
    assert wrong.header("Upload-Offset") == "1000", wrong
    if version >= 9:
        assert wrong.header("Upload-Complete") == "?0", wrong
    assert int(client.offset(url).header("Upload-Offset")) == 1000
    assert stored(server, url) == body[:1000]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_cancellation(make_client, version, transport):
    client, server = make_client(version, transport)
    url = check_announcement(client.create("/files/", pattern(2000), complete=False, length=4000), version)
    cancelled = client.cancel(url)
    assert cancelled.status == 204, cancelled  # X1/X2/X3
    assert client.offset(url).status == 404  # R6
    assert client.append(url, 2000, pattern(10), complete=False).status == 404  # A21
    assert client.cancel(url).status == 404  # X5


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("value", ["1", "2", "10", "99", "abc"])
def test_unknown_interop_version_gets_no_104_and_400(make_client, value, transport):
    """D3: no 104 for a version the server does not serve, 400, nothing created."""
    client, server = make_client(value, transport)
    before = upload_files(server)
    response = client.send("POST", "/files/", {"Upload-Complete": "?1", "Content-Type": "application/octet-stream"},
                           pattern(1000))
    assert response.informational == [], response
    assert response.status == 400, response
    assert upload_files(server) == before


def test_no_interop_version_is_a_tus_request_without_104(make_client):
    """D4: without the header, a request with Upload-Complete is not upgraded: the tus adapter answers (412)."""
    client, _ = make_client(9, "h1")  # for its port; DraftClient always sends the interop field, h11 here does not
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        conn = h11.Connection(h11.CLIENT)
        sock.sendall(conn.send(h11.Request(method="POST", target="/files/", headers=[
            ("Host", "127.0.0.1"), ("Upload-Complete", "?1"), ("Content-Length", "100")])))
        sock.sendall(conn.send(h11.Data(data=pattern(100))) + conn.send(h11.EndOfMessage()))
        statuses = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, (h11.InformationalResponse, h11.Response)):
                statuses.append(event.status_code)
                if isinstance(event, h11.Response):
                    break
    assert statuses == [412], statuses


# --- tus-cli --protocol ietf ---------------------------------------------------------------------------------------

def cli_binary() -> str:
    configured = os.environ.get("TUS_CLI_BIN")
    if configured:
        return configured
    for candidate in (".build/release/tus-cli", ".build/debug/tus-cli"):
        path = repo_root() / candidate
        if path.exists():
            return str(path)
    pytest.skip("set TUS_CLI_BIN to a built tus-cli binary")


class Relay:
    """A TCP relay on 127.0.0.1 in front of the server: it can cut its first `cut_connections` connections after
    `cut_after` client bytes (their bytes so far do reach the server), and throttle client bytes to `rate` bytes/s
    until `unthrottle()`. One thread per direction; everything stops with `stop()`."""

    def __init__(self, upstream_port: int, cut_after: int | None = None, cut_connections: int = 1,
                 rate: float | None = None):
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts_left = cut_connections if cut_after is not None else 0
        self.rate = rate
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.running = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def unthrottle(self) -> None:
        self.rate = None

    def stop(self) -> None:
        self.running = False
        for sock in [self.listener, *self.sockets]:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            self.sockets += [client, upstream]
            cut = self.cuts_left > 0
            self.cuts_left -= 1 if cut else 0
            threading.Thread(target=self._forward, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._backward, args=(upstream, client), daemon=True).start()

    def _forward(self, source: socket.socket, target: socket.socket, cut: bool) -> None:
        sent = 0
        try:
            while self.running:
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready:
                    continue
                want = 16384 if self.rate else 65536
                if cut:
                    want = min(want, self.cut_after - sent)
                data = source.recv(want)
                if not data:
                    break
                target.sendall(data)
                sent += len(data)
                if cut and sent >= self.cut_after:
                    time.sleep(0.3)  # let answers in flight (the 104) reach the client
                    break
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        # The client's side is reset (its request fails at once); the server's is closed (FIN), so it reads every
        # byte forwarded before it finds the body cut short.
        try:
            source.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.close()
            except OSError:
                pass

    def _backward(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while self.running:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass


@pytest.fixture
def relays():
    started: list[Relay] = []
    yield started
    for relay in started:
        relay.stop()


def run_cli(args: list[str], cache: pathlib.Path, timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([cli_binary(), *args], capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.mark.parametrize("version", [3, 6, 9])
def test_tus_cli_retries_a_cut_creation_from_the_servers_offset(plain_server, relays, tmp_path, version):
    relay = Relay(plain_server.port, cut_after=700_000)
    relays.append(relay)
    data = pattern(2_000_000, seed=version + 20)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    result = run_cli(["upload", str(path), f"http://127.0.0.1:{relay.port}/files/", "--protocol", "ietf",
                      "--interop", str(version), "--retry-delay-ms", "50"], tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "announced by 104" in result.stderr, result.stderr
    assert "retry 1/" in result.stderr, result.stderr
    url = result.stdout.strip()
    assert stored(plain_server, url) == data


@pytest.mark.time_limit(120)
def test_tus_cli_killed_mid_creation_resumes_on_the_next_run(plain_server, relays, tmp_path):
    relay = Relay(plain_server.port, rate=1_000_000)
    relays.append(relay)
    data = pattern(6_000_000, seed=42)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    endpoint = f"http://127.0.0.1:{relay.port}/files/"
    cache = tmp_path / "cache"
    process = subprocess.Popen([cli_binary(), "upload", str(path), endpoint, "--protocol", "ietf", "-q"],
                               env={**os.environ, "XDG_CACHE_HOME": str(cache)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        records = cache / "tus-cli" / "uploads"
        def record() -> list[pathlib.Path]:
            return [entry for entry in records.iterdir() if ".tmp" not in entry.name] if records.exists() else []

        wait_until(lambda: record(), timeout=20, message="the 104's record")
        url = record()[0].read_text().strip()
        wait_until(lambda: plain_server.data_file(path_of(url)).exists()
                   and plain_server.data_file(path_of(url)).stat().st_size > 500_000, timeout=20,
                   message="half a megabyte stored")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    relay.unthrottle()
    second = run_cli(["upload", str(path), endpoint, "--protocol", "ietf"], cache)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == url, "a second upload was created"
    assert f"resuming {url} at byte " in second.stderr, second.stderr
    resumed_at = int(second.stderr.split(" at byte ", 1)[1].split(" ", 1)[0])
    assert 0 < resumed_at < len(data), second.stderr
    assert stored(plain_server, url) == data
