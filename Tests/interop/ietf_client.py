"""An independent client of Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload, interop versions 3 to
9), written from docs/IETF-RESUMABLE-UPLOAD.md and nothing of the server's: HTTP/1.1 on `h11`, HTTP/2 on `h2`
(TLS with ALPN, through h2_helpers.H2Client). Both libraries parse informational responses and reject a 1xx that
breaks the protocol, so every 104 the server sends is seen and checked, not skipped.

A request can be cut: the head and the first `cut_after` body bytes go out, the client waits for the 104 (the one
thing it needs to resume), then closes the connection mid-body (HTTP/2: closes it, or resets the stream). Every socket
operation and every wait is bounded."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h11
import h2.exceptions

from h2_helpers import H2Client

PARTIAL_UPLOAD = "application/partial-upload"


@dataclass
class DraftResponse:
    """The final response (None when the request was cut first) and every 1xx head before it."""
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)  # lowercase names
    informational: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def interim(self, status: int = 104) -> list[dict[str, str]]:
        return [headers for code, headers in self.informational if code == status]


def path_of(location: str) -> str:
    """`Location` may be absolute or a path; requests need the path."""
    if location.startswith("http://") or location.startswith("https://"):
        rest = location.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return location


def sf_boolean(value: str | None) -> bool | None:
    return {"?1": True, "?0": False}.get((value or "").strip())


class DraftClient:
    """One interop version over one transport ("h1": plain HTTP/1.1, "h2": HTTP/2 over TLS). `version` is sent as
    given, so a test can send numbers or text the server does not support."""

    def __init__(self, port: int, version: int | str, transport: str = "h1", cafile: str | None = None,
                 timeout: float = 15.0):
        assert transport in ("h1", "h2")
        self.port = port
        self.version = version
        self.transport = transport
        self.cafile = cafile
        self.timeout = timeout

    # --- the draft's requests -------------------------------------------------------------------------------

    def completion(self, complete: bool) -> dict[str, str]:
        """v3 (-01) says `Upload-Incomplete: ?1` for "more to come"; v4+ say `Upload-Complete: ?0`."""
        if str(self.version) == "3":
            return {"Upload-Incomplete": "?0" if complete else "?1"}
        return {"Upload-Complete": "?1" if complete else "?0"}

    def is_complete(self, response: DraftResponse) -> bool | None:
        if str(self.version) == "3":
            incomplete = sf_boolean(response.header("Upload-Incomplete"))
            return None if incomplete is None else not incomplete
        return sf_boolean(response.header("Upload-Complete"))

    def create(self, target: str, body: bytes, complete: bool, length: int | None = None,
               cut_after: int | None = None, extra: dict[str, str] | None = None,
               reset_stream: bool = False, hold: float = 0.3) -> DraftResponse:
        headers = {**self.completion(complete), "Content-Type": "application/octet-stream"}
        if length is not None and int(self.version) >= 6:
            headers["Upload-Length"] = str(length)
        return self.send("POST", target, {**headers, **(extra or {})}, body, cut_after=cut_after,
                         reset_stream=reset_stream, hold=hold)

    def offset(self, url: str) -> DraftResponse:
        return self.send("HEAD", path_of(url), {})

    def append(self, url: str, offset: int, body: bytes, complete: bool, cut_after: int | None = None,
               extra: dict[str, str] | None = None) -> DraftResponse:
        headers = {**self.completion(complete), "Upload-Offset": str(offset)}
        if int(self.version) >= 6:
            headers["Content-Type"] = PARTIAL_UPLOAD
        return self.send("PATCH", path_of(url), {**headers, **(extra or {})}, body, cut_after=cut_after)

    def cancel(self, url: str) -> DraftResponse:
        return self.send("DELETE", path_of(url), {})

    # --- transport ------------------------------------------------------------------------------------------

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
             cut_after: int | None = None, hold: float = 0.3, reset_stream: bool = False) -> DraftResponse:
        """One request on a new connection. With `cut_after`, only that many body bytes are sent; once a 104 came
        (or 5 s passed) and `hold` more seconds, the connection is dropped and the response has status None.
        `reset_stream` (HTTP/2) cancels the stream with RST_STREAM first, as a client abandoning one request on a
        connection it keeps does."""
        all_headers = {"Upload-Draft-Interop-Version": str(self.version), **headers}
        if self.transport == "h1":
            return self._http1(method, path, all_headers, body, cut_after, hold)
        return self._http2(method, path, all_headers, body, cut_after, hold, reset_stream)

    def _http1(self, method, path, headers, body, cut_after, hold) -> DraftResponse:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        try:
            conn = h11.Connection(h11.CLIENT)
            fields = [("Host", f"127.0.0.1:{self.port}"), *headers.items()]
            if method in ("POST", "PATCH", "PUT"):
                fields.append(("Content-Length", str(len(body))))
            sock.sendall(conn.send(h11.Request(method=method, target=path, headers=fields)))
            response = DraftResponse(status=None)
            sent = body if cut_after is None else body[:cut_after]
            try:
                if sent:
                    sock.sendall(conn.send(h11.Data(data=sent)))
                if cut_after is None and method in ("POST", "PATCH", "PUT"):
                    sock.sendall(conn.send(h11.EndOfMessage()))
            except OSError:
                pass  # the server answered early and closed: its answer is still to be read
            if cut_after is not None:
                self._read_http1(sock, conn, response, until_interim=True, limit=5.0)
                time.sleep(hold)
                # A plain close (FIN): the server reads every byte sent, then finds the body cut short. An RST could
                # discard bytes still in its receive buffer on a loaded machine and make the kept offset a race.
                return response
            self._read_http1(sock, conn, response, until_interim=False, limit=self.timeout)
            return response
        finally:
            sock.close()

    @staticmethod
    def _read_http1(sock, conn, response: DraftResponse, until_interim: bool, limit: float) -> None:
        deadline = time.monotonic() + limit
        while True:
            if until_interim and (response.interim() or response.status is not None):
                return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as error:
                raise AssertionError(f"the server broke HTTP/1.1: {error}") from error
            if event is h11.NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if until_interim:
                        return
                    raise TimeoutError("no complete response in time")
                sock.settimeout(remaining)
                try:
                    data = sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                conn.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                response.informational.append(
                    (event.status_code, {n.decode().lower(): v.decode() for n, v in event.headers}))
            elif isinstance(event, h11.Response):
                response.status = event.status_code
                response.headers = {n.decode().lower(): v.decode() for n, v in event.headers}
            elif isinstance(event, h11.Data):
                response.body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    def _http2(self, method, path, headers, body, cut_after, hold, reset_stream=False) -> DraftResponse:
        with H2Client(self.port, cafile=self.cafile, timeout=self.timeout) as client:
            has_body = method in ("POST", "PATCH", "PUT")
            fields = dict(headers)
            if has_body:
                fields["content-length"] = str(len(body))
            stream_id = client.request(method, path, fields, body=None, end_stream=not has_body)
            if has_body:
                sent = body if cut_after is None else body[:cut_after]
                try:
                    client.send_body(stream_id, sent, end_stream=cut_after is None, timeout=self.timeout)
                except (ConnectionError, OSError, h2.exceptions.ProtocolError):
                    pass  # answered (and closed or reset) before the whole body went out: read the answer
            stream = client.streams[stream_id]
            response = DraftResponse(status=None)
            if cut_after is not None:
                deadline = time.monotonic() + 5.0
                while not stream.informational and not stream.headers and time.monotonic() < deadline:
                    if not client.pump(0.1):
                        break
                if reset_stream and not client.done(stream_id):
                    client.conn.reset_stream(stream_id, error_code=0x8)  # CANCEL
                    client.flush()
                time.sleep(hold)
                response.status = stream.status  # an early final answer, else None: cut
            else:
                client.wait(lambda: client.done(stream_id), self.timeout, f"end of {method} {path}")
                response.status = stream.status
                response.headers = {k: v for k, v in stream.headers.items() if not k.startswith(":")}
                response.body = bytes(stream.data)
            for interim in stream.informational:
                response.informational.append(
                    (int(interim[":status"]), {k: v for k, v in interim.items() if not k.startswith(":")}))
            return response
