"""Process and wire helpers for the interop suite: run the real tus-server binary, talk raw HTTP to it.

Everything here is bounded in time: reads use socket timeouts, process waits use explicit deadlines, and a
server is always stopped by its own PID (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import time

TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"
STARTUP_LINE = re.compile(r"^listening on (https?)://([^:/]+):(\d+)(/\S*)$")


def repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2]


def server_binary() -> str:
    configured = os.environ.get("TUS_SERVER_BIN")
    if configured:
        return configured
    for candidate in (".build/release/tus-server", ".build/debug/tus-server"):
        path = repo_root() / candidate
        if path.exists():
            return str(path)
    raise RuntimeError("set TUS_SERVER_BIN to a built tus-server binary")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TusServer:
    """One tus-server process on 127.0.0.1 with a random port, stdout's start-up line parsed for the port."""

    def __init__(
        self, upload_dir: pathlib.Path, *extra_args: str, log_path: pathlib.Path | None = None,
        launcher: tuple[str, ...] = (),
    ):
        """`launcher` prefixes the command line (e.g. `prlimit --nofile=256:256`); the PID is still the server's
        when the launcher execs it."""
        self.upload_dir = pathlib.Path(upload_dir)
        self.extra_args = list(extra_args)
        self.launcher = list(launcher)
        self.log_path = log_path or self.upload_dir.parent / f"{self.upload_dir.name}-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.base_path = "/files/"
        self.scheme = "http"  # "https" when started with --tls-certificate

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.base_path}"

    def url(self, path: str) -> str:
        """Absolute URL for a path such as /files/<id>."""
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 20.0) -> "TusServer":
        args = [
            *self.launcher, server_binary(), "--host", "127.0.0.1", "--port", "0", "--upload-dir", str(self.upload_dir),
            "--loops", "1", *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        line = b""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimeoutError(f"tus-server printed no start-up line within {timeout}s: {args}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            byte = os.read(fd, 1)
            if not byte:
                code = self.process.wait(timeout=5)
                raise RuntimeError(f"tus-server exited ({code}) before listening; log: {self.log_text()[-2000:]}")
            line += byte
        match = STARTUP_LINE.match(line.decode().strip())
        if not match:
            self.kill()
            raise RuntimeError(f"unexpected start-up line: {line!r}")
        self.scheme = match.group(1)
        self.port = int(match.group(3))
        self.base_path = match.group(4)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (None if it had to be killed)."""
        if self.process is None:
            return None
        process = self.process
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                self._close()
                return None
        self._close()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: the crash the restart tests simulate."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def info_files(self) -> list[pathlib.Path]:
        return sorted(self.upload_dir.glob("*.info"))

    def data_file(self, upload_path: str) -> pathlib.Path:
        return self.upload_dir / upload_path.rstrip("/").rsplit("/", 1)[-1]


class RawResponse:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def __repr__(self) -> str:
        return f"RawResponse({self.status} {self.reason}, {self.headers}, {self.body[:100]!r})"


class RawConnection:
    """A plain socket for bytes a client library would never send: half bodies, junk, smuggling attempts."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return False
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_response(self, for_head: bool = False, skip_informational: bool = True) -> RawResponse | None:
        """The next response, or None if the server closed (or reset) the connection first."""
        while True:
            while b"\r\n\r\n" not in self.buffer:
                if not self._fill():
                    return None
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            status = int(parts[1])
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
            response = RawResponse(status, parts[2] if len(parts) > 2 else "", headers, b"")
            if 100 <= status < 200 and skip_informational:
                continue
            if for_head or status in (204, 304) or status < 200:
                return response
            length = int(response.header("Content-Length") or "0")
            while len(self.buffer) < length:
                if not self._fill():
                    break
            response.body, self.buffer = self.buffer[:length], self.buffer[length:]
            return response

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> RawResponse | None:
        all_headers = {"Host": "127.0.0.1", **TUS_HEADERS, **(headers or {})}
        if body and "Content-Length" not in all_headers and "Transfer-Encoding" not in all_headers:
            all_headers["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        if not self.send(head.encode("latin-1") + body):
            return None
        return self.read_response(for_head=method == "HEAD")


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> RawResponse | None:
    with RawConnection(port) as connection:
        return connection.request(method, path, headers, body)


def create_upload(port: int, length: int | None, metadata: str | None = None) -> str:
    """POSTs a creation request and returns the upload's path."""
    headers: dict[str, str] = {"Content-Length": "0"}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    if metadata is not None:
        headers["Upload-Metadata"] = metadata
    response = request(port, "POST", "/files/", headers)
    assert response is not None and response.status == 201, response
    location = response.header("Location")
    assert location
    return re.sub(r"^https?://[^/]+", "", location)


def head_offset(port: int, path: str) -> int:
    response = request(port, "HEAD", path)
    assert response is not None and response.status == 200, response
    return int(response.header("Upload-Offset") or "-1")


def patch(port: int, path: str, offset: int, body: bytes, headers: dict[str, str] | None = None) -> RawResponse | None:
    all_headers = {"Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset), **(headers or {})}
    return request(port, "PATCH", path, all_headers, body)


def wait_until(predicate, timeout: float, interval: float = 0.02, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def draft_request(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                  timeout: float = 30.0) -> tuple[int, dict[str, str], bytes, list[tuple[int, dict[str, str]]]]:
    """One request of draft-ietf-httpbis-resumable-upload over `h11`, which, unlike `http.client` (and so `requests`),
    reads 1xx heads other than 100 as informational: returns the final status, its headers (lower-case names), its
    body and every informational (status, headers) before it."""
    import h11

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h11.Connection(h11.CLIENT)
        fields = [("Host", f"127.0.0.1:{port}"), *headers.items()]
        if method not in ("GET", "HEAD", "DELETE", "OPTIONS") or body:
            fields.append(("Content-Length", str(len(body))))
        sock.sendall(conn.send(h11.Request(method=method, target=path, headers=fields)))
        try:
            if body:
                sock.sendall(conn.send(h11.Data(data=body)))
            sock.sendall(conn.send(h11.EndOfMessage()))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the body was wanted: the answer is already there to read
        informational, status, final_headers, received = [], 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                informational.append((event.status_code, {n.decode().lower(): v.decode() for n, v in event.headers}))
            elif isinstance(event, h11.Response):
                status = event.status_code
                final_headers = {n.decode().lower(): v.decode() for n, v in event.headers}
            elif isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, final_headers, received, informational
    finally:
        sock.close()
