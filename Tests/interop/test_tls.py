"""TLS termination in tus-server: real clients (curl, openssl s_client, tuspy, Python ssl) over HTTPS.

Self-contained: certificates are generated at test time with the openssl CLI, the server runs from
TUS_SERVER_BIN on an ephemeral port and is stopped by PID.
"""
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SERVER_BIN = os.environ.get("TUS_SERVER_BIN", ".build/debug/tus-server")


def run(*args, timeout=30, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def make_ca(directory: Path):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"), "-days", "2",
        "-subj", "/CN=tus test CA").check_returncode()


def make_leaf(directory: Path, name: str, days: int = 2, not_after_past: bool = False):
    key, csr, pem = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}").check_returncode()
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    args = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"),
            "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-out", str(pem), "-extfile", str(ext)]
    if not_after_past:
        # openssl x509 cannot backdate; sign with openssl ca-less trick: -days 0 is "now", then wait
        args += ["-days", "0"]
    else:
        args += ["-days", str(days)]
    run(*args).check_returncode()
    return pem, key


class Server:
    def __init__(self, *extra, upload_dir=None):
        self.upload_dir = upload_dir or tempfile.mkdtemp(prefix="tus-tls-")
        self.process = subprocess.Popen(
            [SERVER_BIN, "--host", "127.0.0.1", "--port", "0", "--loops", "1", "--upload-dir", self.upload_dir,
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr.read()}")
        self.url = line[len("listening on "):]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def pki():
    directory = Path(tempfile.mkdtemp(prefix="tus-pki-"))
    make_ca(directory)
    first = make_leaf(directory, "first")
    second = make_leaf(directory, "second")
    return directory, first, second


@pytest.fixture
def tls_server(pki):
    directory, (pem, key), _ = pki
    live_pem, live_key = directory / "live.pem", directory / "live.key"
    live_pem.write_bytes(pem.read_bytes())
    live_key.write_bytes(key.read_bytes())
    server = Server("--tls-certificate", str(live_pem), "--tls-key", str(live_key))
    yield server
    server.stop()


def curl(*args, cafile, timeout=60):
    # HTTP/1.1 over TLS (curl would pick h2 by ALPN; test_http2.py covers that).
    return run("curl", "-sS", "--http1.1", "--cacert", str(cafile), *args, timeout=timeout)


def test_startup_line_says_https(tls_server):
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert tls_server.url.endswith("/files/")


def test_curl_uploads_and_downloads_over_https(tls_server, pki, tmp_path):
    ca = pki[0] / "ca.pem"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    created = curl("-i", "-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", f"Upload-Length: {len(data)}",
                   f"https://localhost:{tls_server.port}/files/", cafile=ca)
    assert " 201 " in created.stdout.splitlines()[0], created.stdout + created.stderr
    location = next(line.split(" ", 1)[1].strip() for line in created.stdout.splitlines()
                    if line.lower().startswith("location:"))
    assert location.startswith("https://")
    patched = curl("-i", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                   "-H", "Content-Type: application/offset+octet-stream", "--data-binary", f"@{source}",
                   location, cafile=ca)
    assert "204 No Content" in patched.stdout
    assert f"Upload-Offset: {len(data)}" in patched.stdout
    downloaded = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", str(ca), location], capture_output=True,
                                timeout=60)
    assert hashlib.sha256(downloaded.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"])
@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_each_tls13_suite_uploads_byte_exact(tls_server, pki, tmp_path, suite, http):
    """The server decrypts TLS 1.3 records itself after the handshake (TLS13RecordReader), per suite."""
    ca = pki[0] / "ca.pem"
    data = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    tls = ("--tlsv1.3", "--tls13-ciphers", suite, http)
    created = run("curl", "-sS", *tls, "--cacert", str(ca), "-i", "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
                  "-H", f"Upload-Length: {len(data)}", f"https://localhost:{tls_server.port}/files/", timeout=60)
    location = next(line.split(" ", 1)[1].strip() for line in created.stdout.splitlines()
                    if line.lower().startswith("location:"))
    patched = run("curl", "-sS", *tls, "--cacert", str(ca), "-i", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0",
                  "-H", "Upload-Offset: 0", "-H", "Content-Type: application/offset+octet-stream",
                  "--data-binary", f"@{source}", location, timeout=60)
    statuses = [line.split()[1] for line in patched.stdout.splitlines() if line.startswith("HTTP/")]
    assert statuses[-1:] == ["204"], patched.stdout + patched.stderr  # after a 100 Continue on HTTP/1.1
    assert (Path(tls_server.upload_dir) / location.rsplit("/", 1)[1]).read_bytes() == data



def test_records_after_a_forged_one_are_never_processed_and_the_socket_closes(tls_server, pki):
    """A TLS 1.3 record that fails its tag (read by the server's own record reader) ends the connection: the
    valid request record right behind it gets no answer, the socket closes, and the server keeps serving."""
    ca = pki[0] / "ca.pem"
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert options_over(tls).startswith(b"HTTP/1.1 ")
            # A forged record (it consumes no sequence number of ours), then a genuine one right behind it.
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + os.urandom(64))
            tls.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            received = b""
            try:
                while chunk := tls.recv(4096):
                    received += chunk
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                pass
            assert b"HTTP/1.1" not in received
    answer = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "OPTIONS",
                  f"https://localhost:{tls_server.port}/files/", cafile=ca)
    assert answer.stdout in ("200", "204")


def s_client_session(port):
    return subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-crlf",
                             "-servername", "localhost"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def send_lines(process, line: bytes, count: int) -> int:
    """Returns how many were sent before s_client exited (a broken pipe)."""
    for sent in range(count):
        try:
            process.stdin.write(line)
            process.stdin.flush()
        except BrokenPipeError:
            return sent
        time.sleep(0.02)  # s_client takes a command letter only at the start of one stdin read
    return count


def test_client_key_updates_with_update_requested_keep_the_connection_serving(tls_server):
    """openssl s_client's "K" sends KeyUpdate(update_requested): the server's own record reader follows the key
    change and answers with a KeyUpdate of its own, which the client must be able to read the response through."""
    client = s_client_session(tls_server.port)
    try:
        time.sleep(0.5)
        send_lines(client, b"K\n", 10)
        send_lines(client, b"OPTIONS /files/ HTTP/1.1\nHost: localhost\nConnection: close\n\n", 1)
        output, _ = client.communicate(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert b"HTTP/1.1 204" in output or b"HTTP/1.1 200" in output, output[-2000:]


def test_a_flood_of_key_updates_ends_the_connection_and_the_server_keeps_serving(tls_server, pki):
    """More than 32 KeyUpdates in a row (no application data between) end the connection (as BoringSSL does):
    each costs the server a key schedule step for 27 bytes."""
    client = s_client_session(tls_server.port)
    try:
        time.sleep(0.5)
        # 32 in a row are fine: the connection ends at the 33rd (s_client exits once the server closed).
        sent = send_lines(client, b"k\n", 60)
        client.wait(timeout=10)
        assert sent >= 33, sent
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
            pytest.fail("the connection stayed open")
    answer = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "OPTIONS",
                  f"https://localhost:{tls_server.port}/files/", cafile=pki[0] / "ca.pem")
    assert answer.stdout in ("200", "204")


def s_client(port, *flags):
    return run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", *flags, input="", timeout=20)


def negotiated(result) -> str | None:
    """The protocol of a completed handshake ("TLSv1.3"), or None when the handshake failed."""
    for line in result.stdout.splitlines():
        if line.startswith("New, "):
            version = line.split(",")[1].strip()
            return None if version == "(NONE)" else version
    return None


def test_protocol_versions_and_alpn(tls_server):
    refused = s_client(tls_server.port, "-tls1_1")
    assert negotiated(refused) is None
    assert "alert protocol version" in refused.stderr or "no protocols available" in refused.stderr
    tls12 = s_client(tls_server.port, "-tls1_2", "-alpn", "http/1.1")
    assert negotiated(tls12) == "TLSv1.2"
    assert "ALPN protocol: http/1.1" in tls12.stdout
    tls13 = s_client(tls_server.port, "-tls1_3", "-alpn", "http/1.1")
    assert negotiated(tls13) == "TLSv1.3"
    assert "ALPN protocol: http/1.1" in tls13.stdout


def test_tls13_mode_refuses_tls12(pki):
    directory, (pem, key), _ = pki
    server = Server("--tls-certificate", str(pem), "--tls-key", str(key), "--tls-mode", "tls13")
    try:
        assert negotiated(s_client(server.port, "-tls1_2")) is None
        assert negotiated(s_client(server.port, "-tls1_3")) == "TLSv1.3"
    finally:
        server.stop()


def test_tuspy_uploads_over_https_with_ca_bundle(tls_server, pki, tmp_path, monkeypatch):
    from tusclient import client as tus_client
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki[0] / "ca.pem"))
    data = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    client = tus_client.TusClient(f"https://localhost:{tls_server.port}/files/")
    uploader = client.uploader(str(source), chunk_size=512 * 1024, metadata={"filename": "upload.bin"})
    uploader.upload()
    stored = Path(tls_server.upload_dir) / uploader.url.rstrip("/").rsplit("/", 1)[1]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_junk_and_plain_http_on_tls_port_do_not_harm_the_server(tls_server, pki):
    for payload in (b"GET /files/ HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(4096), b"\x16\x03\x01\x00\x05hello"):
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
            raw.sendall(payload)
            raw.settimeout(5)
            try:
                while raw.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    ok = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "OPTIONS",
              f"https://localhost:{tls_server.port}/files/", cafile=pki[0] / "ca.pem")
    assert ok.stdout == "204"
    assert tls_server.process.poll() is None


def peer_subject_cn(connection: ssl.SSLSocket) -> str:
    subject = dict(item[0] for item in connection.getpeercert()["subject"])
    return subject["commonName"]


def options_over(connection: ssl.SSLSocket) -> bytes:
    connection.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = connection.recv(4096)
        assert chunk, "connection closed"
        response += chunk
    return response.split(b"\r\n", 1)[0]


def test_sighup_swaps_certificate_and_keeps_open_connections(tls_server, pki):
    directory, _, (second_pem, second_key) = pki
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as old:
            assert peer_subject_cn(old) == "first"
            assert b"204" in options_over(old)
            (directory / "live.pem").write_bytes(second_pem.read_bytes())
            (directory / "live.key").write_bytes(second_key.read_bytes())
            tls_server.process.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw2:
                with context.wrap_socket(raw2, server_hostname="localhost") as new:
                    assert peer_subject_cn(new) == "second"
            # The connection opened before the reload still works.
            assert b"204" in options_over(old)


def test_bad_pair_on_sighup_keeps_the_old_certificate(tls_server, pki):
    directory = pki[0]
    (directory / "live.key").write_text("not a key")
    tls_server.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    ok = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "OPTIONS",
              f"https://localhost:{tls_server.port}/files/", cafile=directory / "ca.pem")
    assert ok.stdout == "204"


@pytest.mark.parametrize("problem", ["missing", "mismatch", "expired"])
def test_bad_certificate_fails_at_startup_naming_the_file(pki, problem, tmp_path):
    directory, (pem, key), (second_pem, second_key) = pki
    if problem == "missing":
        cert, private = tmp_path / "nope.pem", key
    elif problem == "mismatch":
        cert, private = pem, second_key
    else:
        cert, private = make_leaf(directory, "expired", not_after_past=True)
        time.sleep(1.5)  # -days 0 expires "now"; make sure notAfter is in the past
    result = run(SERVER_BIN, "--port", "0", "--store", "memory", "--tls-certificate", str(cert),
                 "--tls-key", str(private), timeout=20)
    assert result.returncode != 0
    assert "listening on" not in result.stdout
    named = str(cert) if problem != "mismatch" else str(private)
    assert named in result.stderr or str(cert) in result.stderr, result.stderr


def test_broken_tls_record_mid_patch_commits_what_arrived_and_frees_the_upload(tls_server, pki):
    """Regression: a TLS error in the middle of a PATCH body used to close the connection without telling the
    upload, which then kept its lock, its open file and an unwritten record forever."""
    ca = pki[0] / "ca.pem"
    created = curl("-i", "-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 100000",
                   f"https://localhost:{tls_server.port}/files/", cafile=ca)
    location = next(line.split(" ", 1)[1].strip() for line in created.stdout.splitlines()
                    if line.lower().startswith("location:"))
    upload_id = location.rsplit("/", 1)[1]
    context = ssl.create_default_context(cafile=str(ca))
    body = os.urandom(50_000)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall((f"PATCH /files/{upload_id} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
                         "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                         "Content-Length: 100000\r\n\r\n").encode() + body)
            time.sleep(0.3)
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + os.urandom(64))  # a record that cannot decrypt
            time.sleep(0.3)
    # A PATCH that only moves the offset rewrites no record (README, "Storage and durability"): what arrived is
    # committed when HEAD reports it and the data file holds it (recovery takes the offset from the file).
    def offset() -> int | None:
        answer = curl("-s", "-I", "-H", "Tus-Resumable: 1.0.0", location, cafile=ca)
        return next((int(line.split(":", 1)[1]) for line in answer.stdout.splitlines()
                     if line.lower().startswith("upload-offset:")), None)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and offset() != len(body):
        time.sleep(0.1)
    assert offset() == len(body), "the bytes that arrived are committed"
    assert (Path(tls_server.upload_dir) / upload_id).read_bytes() == body
    # The upload is free again: a DELETE does not have to take it over (no 400/423 dance).
    deleted = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", "Tus-Resumable: 1.0.0",
                   location, cafile=ca)
    assert deleted.stdout == "204"


# --- Redis over TLS (--redis rediss://...): the cluster state store on the same SecureStream as HTTPS.

def redis_tls_server(pki, tmp_path):
    from cluster_helpers import RedisServer
    directory, (pem, key), _ = pki
    return RedisServer(tmp_path / "redis", tls=(str(pem), str(key), str(directory / "ca.pem"))).start()


def test_cluster_state_goes_to_redis_over_tls_with_a_client_certificate(pki, tmp_path):
    directory, _, (client_pem, client_key) = pki
    redis = redis_tls_server(pki, tmp_path)
    server = None
    try:
        server = Server("--redis", f"rediss://localhost:{redis.tls_port}", "--redis-ca", str(directory / "ca.pem"),
                        "--redis-cert", str(client_pem), "--redis-key", str(client_key), "--log-level", "warning")
        created = run("curl", "-sS", "-i", "-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 5",
                      server.url)
        assert " 201 " in created.stdout.splitlines()[0], created.stdout + created.stderr
        location = next(line.split(" ", 1)[1].strip() for line in created.stdout.splitlines()
                        if line.lower().startswith("location:"))
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        patched = run("curl", "-sS", "-i", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                      "-H", "Content-Type: application/offset+octet-stream", "--data-binary", "hello", location)
        assert "204 No Content" in patched.stdout, patched.stdout + patched.stderr
        # The record is in Redis (read over the harness's plain port): it went there over TLS.
        assert redis.command("EXISTS", f"tus:{{{upload_id}}}:info") == b":1"
        head = run("curl", "-sS", "-I", "-H", "Tus-Resumable: 1.0.0", location)
        assert "Upload-Offset: 5" in head.stdout, head.stdout
    finally:
        if server:
            server.stop()
        redis.stop()


def test_redis_refusing_the_client_answers_503_and_the_server_keeps_serving(pki, tmp_path):
    directory, _, _ = pki
    redis = redis_tls_server(pki, tmp_path)
    server = None
    try:
        # No client certificate: Redis (tls-auth-clients yes) ends every handshake; requests get 503, not a hang.
        server = Server("--redis", f"rediss://localhost:{redis.tls_port}", "--redis-ca", str(directory / "ca.pem"),
                        "--log-level", "warning")
        for _ in range(2):
            created = run("curl", "-sS", "-i", "-m", "10", "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
                          "-H", "Upload-Length: 5", server.url)
            assert " 503 " in created.stdout.splitlines()[0], created.stdout + created.stderr
        options = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "OPTIONS", server.url)
        assert options.stdout == "204"
    finally:
        if server:
            server.stop()
        redis.stop()


def test_unreadable_redis_ca_stops_the_start(tmp_path):
    process = subprocess.run(
        [SERVER_BIN, "--host", "127.0.0.1", "--port", "0", "--upload-dir", str(tmp_path), "--redis",
         "rediss://localhost:1", "--redis-ca", str(tmp_path / "missing.pem")],
        capture_output=True, text=True, timeout=20)
    assert process.returncode != 0
    assert "missing.pem" in process.stderr + process.stdout
    refused = subprocess.run(
        [SERVER_BIN, "--port", "0", "--upload-dir", str(tmp_path), "--redis", "redis://localhost:1",
         "--redis-ca", str(tmp_path / "ca.pem")], capture_output=True, text=True, timeout=20)
    assert refused.returncode != 0 and "rediss://" in refused.stderr
