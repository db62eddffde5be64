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
import hyperframe.frame


@dataclass
class Stream:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    # Every informational (1xx) head before the final one, in order, pseudo-headers included.
    informational: list[dict[str, str]] = field(default_factory=list)

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
            else:
                stream.informational.append({k: v for k, v in event.headers})
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


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
SETTINGS_TIMEOUT = 0x4
REFUSED_STREAM = 0x7


def connect(port: int, cafile: str | None, tls: bool = True, timeout: float = 10.0) -> socket.socket:
    """A socket to the server that negotiated h2 by ALPN (or a plain one for h2c)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if not tls:
        return raw
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    return sock


class RawH2:
    """A client that writes frames itself (hyperframe, with its own HPACK encoder), for the attacks the `h2` state
    machine refuses to produce: floods of empty frames, HPACK bombs. It reads what the server sends back (GOAWAY,
    RST_STREAM, response HEADERS); every wait is bounded."""

    def __init__(self, port: int, cafile: str | None, tls: bool = True, timeout: float = 10.0):
        import hpack
        self.timeout = timeout
        self.sock = connect(port, cafile, tls, timeout)
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.goaway: int | None = None
        self.resets: dict[int, int] = {}
        self.statuses: dict[int, int] = {}
        self.server_settings: dict[int, int] = {}
        self.closed = False
        self.send_failed = False
        self.sock.sendall(PREFACE + hyperframe.frame.SettingsFrame(0).serialize())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawH2":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> bool:
        """False once the server closed (or stopped reading and reset). What it sent before is still read: a
        GOAWAY ahead of the close is in our receive buffer."""
        if self.closed or self.send_failed:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.send_failed = True
            return False

    def read(self, timeout: float = 0.2) -> None:
        """Reads once (up to `timeout`) and records the frames."""
        if self.closed:
            return
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(256 * 1024)
        except (socket.timeout, ssl.SSLWantReadError, TimeoutError):
            return
        except OSError:
            self.closed = True
            return
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.closed = True
            return
        self.buffer += data
        while len(self.buffer) >= 9:
            frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            self._record(frame)

    def _record(self, frame) -> None:
        if isinstance(frame, hyperframe.frame.GoAwayFrame):
            self.goaway = frame.error_code
        elif isinstance(frame, hyperframe.frame.RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, hyperframe.frame.HeadersFrame):
            fields = dict(self.decoder.decode(frame.data))
            if ":status" in fields:
                self.statuses.setdefault(frame.stream_id, int(fields[":status"]))
        elif isinstance(frame, hyperframe.frame.SettingsFrame) and "ACK" not in frame.flags:
            self.server_settings.update(frame.settings)
            self.send(hyperframe.frame.SettingsFrame(0, flags=["ACK"]).serialize())

    def wait(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate() and not self.closed and time.monotonic() < deadline:
            self.read(0.05)
        return predicate()

    def wait_closed(self, timeout: float = 10.0) -> float:
        """Reads until the server closed the connection; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while not self.closed and time.monotonic() < deadline:
            self.read(0.1)
        assert self.closed, f"the server did not close the connection within {timeout}s"
        return time.monotonic() - started


def request_block(encoder, method: str, path: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    return encoder.encode([(":method", method), (":path", path), (":scheme", "https"), (":authority", "localhost"),
                           ("tus-resumable", "1.0.0")] + (extra or []))


class LatencyProbe:
    """Another client's `HEAD`s on its own HTTP/2 connection while an attack runs, one every `interval` seconds:
    the latencies (a request that takes longer than `timeout` counts as `timeout`) and their p99."""

    def __init__(self, port: int, cafile: str, path: str, interval: float = 0.01, timeout: float = 5.0):
        import threading
        self.port, self.cafile, self.path, self.interval, self.timeout = port, cafile, path, interval, timeout
        self.latencies: list[float] = []
        self.timeouts = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LatencyProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)

    def _run(self) -> None:
        client = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = H2Client(self.port, self.cafile, timeout=self.timeout)
                started = time.monotonic()
                stream = client.get(client.request("HEAD", self.path, {"tus-resumable": "1.0.0"}), self.timeout)
                elapsed = time.monotonic() - started
                if stream.status not in (200, 404):
                    self.errors.append(f"status {stream.status}")
                self.latencies.append(elapsed)
            except TimeoutError:
                self.timeouts += 1
                self.latencies.append(self.timeout)
                client = None
            except (OSError, ConnectionError) as error:
                self.errors.append(repr(error))
                client = None
            time.sleep(self.interval)
        if client is not None:
            client.close()

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        assert ordered, "the probe completed no request"
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, clock ticks)."""
    import os
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Frame floods that carry no progress (CVE-2019-9518 and kin). Each builds `count` frames for a connection whose
# stream `stream_id` is open (an upload waiting for its body).
def flood_frames(kind: str, stream_id: int, count: int, first_new_stream: int = 101) -> bytes:
    frames = hyperframe.frame
    if kind == "empty-data":
        one = frames.DataFrame(stream_id).serialize()
    elif kind == "priority":
        one = frames.PriorityFrame(stream_id, depends_on=0, stream_weight=15).serialize()
    elif kind == "window-update":
        one = frames.WindowUpdateFrame(0, window_increment=1).serialize()
    elif kind == "ping":
        one = frames.PingFrame(0, opaque_data=b"flooding").serialize()
    elif kind == "settings":
        one = frames.SettingsFrame(0).serialize()
    elif kind == "rst-stream":
        # Resets of a stream that is already closed: nghttp2 ignores them, each still costs a frame's work.
        one = frames.RstStreamFrame(stream_id, error_code=0).serialize()
    elif kind == "empty-headers":
        # Header blocks without a single field, each on a new stream (every one is a malformed request).
        return b"".join(frames.HeadersFrame(first_new_stream + 2 * i, data=b"", flags=["END_HEADERS"]).serialize()
                        for i in range(count))
    elif kind == "empty-continuation":
        head = frames.HeadersFrame(first_new_stream, data=b"").serialize()
        return head + frames.ContinuationFrame(first_new_stream, data=b"").serialize() * count
    else:
        raise ValueError(kind)
    return one * count


def bomb_block(encoder: hpack.Encoder, path: str, refs: int = 10_000, entry_bytes: int = 4000) -> bytes:
    """A ~10 KB header block that decodes to ~39 MiB: one 4 KB field added to the HPACK dynamic table (sent
    literally only in the connection's first block), then `refs` one-byte references to it (index 62: the newest
    dynamic entry)."""
    head = request_block(encoder, "HEAD", path, [("x-bomb", "a" * entry_bytes)])
    return head + bytes([0x80 | 62]) * refs


def hpack_bomb_connection(port: int, cafile: str, path: str, blocks: int) -> tuple[RawH2, int]:
    """Sends `blocks` bomb blocks, one stream each, waiting for the server's answer to each; returns the client
    and how many blocks went out before the server closed."""
    import hpack
    client = RawH2(port, cafile)
    encoder = hpack.Encoder()
    sent = 0
    for index in range(blocks):
        stream_id = 1 + 2 * index
        frame = hyperframe.frame.HeadersFrame(stream_id, data=bomb_block(encoder, path),
                                              flags=["END_HEADERS", "END_STREAM"])
        if not client.send(frame.serialize()):
            break
        sent += 1
        client.wait(lambda: stream_id in client.resets or stream_id in client.statuses or client.goaway is not None,
                    timeout=5)
        if client.goaway is not None:
            break
    return client, sent


def tus_patch_fields(path: str) -> tuple[str, str, list[tuple[str, str]]]:
    """A tus PATCH of a 1000-byte upload whose body never comes: the stream a flood rides on."""
    return "PATCH", path, [("upload-offset", "0"), ("content-length", "1000"),
                           ("content-type", "application/offset+octet-stream")]


def flood_connection(port: int, cafile: str, upload: tuple[str, str, list[tuple[str, str]]], kind: str,
                     seconds: float) -> tuple[RawH2, int]:
    """Opens an upload stream (`upload`: method, path, fields; its body never comes), then floods frames of `kind`
    until the server closes or `seconds` pass. Returns the client and the frames sent (written to the socket,
    not all read by the server)."""
    import hpack
    client = RawH2(port, cafile)
    encoder = hpack.Encoder()
    method, path, fields = upload
    block = request_block(encoder, method, path, fields)
    client.send(hyperframe.frame.HeadersFrame(1, data=block, flags=["END_HEADERS"]).serialize())
    sent = 0
    chunk = 2000
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not client.closed and not client.send_failed and client.goaway is None:
        if not client.send(flood_frames(kind, 1, chunk, first_new_stream=3 + 2 * sent)):
            break
        sent += chunk
        client.read(0)
    client.wait(lambda: client.goaway is not None, timeout=5)
    return client, sent


def rapid_reset_connection(port: int, cafile: str, path: str, streams: int = 400) -> RawH2:
    """CVE-2023-44487: `streams` HEADERS each followed at once by RST_STREAM CANCEL, in one write; then waits
    (bounded) for the server's GOAWAY."""
    import hpack
    client = RawH2(port, cafile)
    encoder = hpack.Encoder()
    frames = []
    for index in range(streams):
        stream_id = 1 + 2 * index
        frames.append(hyperframe.frame.HeadersFrame(
            stream_id, data=request_block(encoder, "HEAD", path), flags=["END_HEADERS"]).serialize())
        frames.append(hyperframe.frame.RstStreamFrame(stream_id, error_code=8).serialize())
    client.send(b"".join(frames))
    client.wait(lambda: client.goaway is not None, timeout=5)
    return client
