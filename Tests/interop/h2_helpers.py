"""A small HTTP/2 client over the `h2` state machine, for tests that need frame-level control (concurrent
streams on one connection, flow-control windows, resets, CONTINUATION frames). Every wait is bounded."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings


@dataclass
class Stream:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int | None:
        value = self.headers.get(":status")
        return int(value) if value is not None else None


class H2Client:
    def __init__(self, port: int, cafile: str | None = None, tls: bool = True, timeout: float = 10.0,
                 settings: dict | None = None, opens_windows: bool = True):
        """`opens_windows=False` is a client that never hands received bytes back to flow control (no
        WINDOW_UPDATE for what arrived): a stalled download. The test opens a stream's window itself with
        `conn.increment_flow_control_window` when it wants that stream to move."""
        self.timeout = timeout
        self.opens_windows = opens_windows
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            context = ssl.create_default_context(cafile=cafile)
            context.set_alpn_protocols(["h2", "http/1.1"])
            self.sock = context.wrap_socket(raw, server_hostname="localhost")
            assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        else:
            self.sock = raw
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        # Our receive window is large so that downloads never wait on us.
        self.conn.increment_flow_control_window(64 * 1024 * 1024)
        self.streams: dict[int, Stream] = {}
        self.window_updates: list[tuple[int, int]] = []
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.remote_settings_seen = False
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                # Includes ssl.SSLError; the server closed (or stopped reading before closing).
                self.closed = True
                raise

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "H2Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pump(self, timeout: float = 0.2) -> bool:
        """Reads once (up to `timeout`) and processes the events. False when the connection closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(256 * 1024)
        except (socket.timeout, ssl.SSLWantReadError, TimeoutError):
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return False
        finally:
            # Writes keep the long timeout: a busy server may take a moment to drain its socket.
            self.sock.settimeout(self.timeout)
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._handle(event)
        try:
            self.flush()
        except OSError:
            return False
        return True

    def _handle(self, event) -> None:
        if isinstance(event, h2.events.ResponseReceived) or isinstance(event, h2.events.InformationalResponseReceived):
            stream = self.streams.setdefault(event.stream_id, Stream())
            if isinstance(event, h2.events.ResponseReceived):
                stream.headers = {k: v for k, v in event.headers}
        elif isinstance(event, h2.events.DataReceived):
            self.streams.setdefault(event.stream_id, Stream()).data += event.data
            if self.opens_windows:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams.setdefault(event.stream_id, Stream()).ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams.setdefault(event.stream_id, Stream()).reset = event.error_code
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_updates.append((event.stream_id, event.delta))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event
            if event.error_code == 0:
                # h2 treats any GOAWAY as the end of the connection, but RFC 9113 §6.8 lets the streams up to
                # last_stream_id finish; keep its state machine open so the test can finish them.
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def wait(self, predicate, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"HTTP/2: {what} not reached within {timeout}s")
            if not self.pump(0.1) and not predicate():
                raise ConnectionError(f"HTTP/2 connection closed while waiting for {what}")

    def done(self, stream_id: int) -> bool:
        stream = self.streams.get(stream_id)
        return stream is not None and (stream.ended or stream.reset is not None)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                end_stream: bool = True, authority: str = "localhost") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "https"), (":authority", authority)]
        fields += [(k.lower(), v) for k, v in (headers or {}).items()]
        if body is not None:
            fields.append(("content-length", str(len(body))))
        self.streams[stream_id] = Stream()
        self.conn.send_headers(stream_id, fields, end_stream=end_stream and not body)
        self.flush()
        if body:
            self.send_body(stream_id, body, end_stream=end_stream)
        return stream_id

    def sendable(self, stream_id: int) -> int:
        return min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)

    def send_body(self, stream_id: int, body: bytes, end_stream: bool = True, timeout: float = 30.0) -> None:
        """Sends within the server's windows, waiting for WINDOW_UPDATEs as needed."""
        offset = 0
        deadline = time.monotonic() + timeout
        while offset < len(body):
            size = min(self.sendable(stream_id), len(body) - offset)
            if size <= 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("HTTP/2 window stayed closed")
                if not self.pump(0.05):
                    raise ConnectionError("HTTP/2 connection closed mid-body")
                if self.streams[stream_id].reset is not None:
                    return
                continue
            self.conn.send_data(stream_id, body[offset:offset + size])
            offset += size
            self.flush()
        if end_stream:
            self.conn.end_stream(stream_id)
            self.flush()

    def get(self, stream_id: int, timeout: float = 10.0) -> Stream:
        self.wait(lambda: self.done(stream_id), timeout, f"end of stream {stream_id}")
        return self.streams[stream_id]
