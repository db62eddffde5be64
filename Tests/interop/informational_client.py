"""One POST that records every response head it gets, informational (1xx) ones included, over HTTP/1.1 (h11) or
HTTP/2 (h2), plain or TLS. Used by the Swift InformationalResponseTests: both libraries reject a 1xx that breaks
the protocol (a body, END_STREAM, one after the final response), which `http.client` would not even see.

The body goes in two parts: the second only after `--wait-informational` 1xx heads arrived, so a hint the server
sends on the first body bytes is provably mid-body. Prints {"heads": [{"status", "headers"}], "body"} as JSON.
Every socket operation has a timeout."""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys

import h11
import h2.config
import h2.connection
import h2.events


def pattern(count: int) -> bytes:
    # The same bytes as TusTestSupport's patternBytes(count:seed: 0).
    return bytes((i * 31) % 256 for i in range(count))


def connect(port: int, cafile: str | None, alpn: str) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    if cafile is None:
        return raw
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols([alpn])
    sock = context.wrap_socket(raw, server_hostname="localhost")
    if sock.selected_alpn_protocol() != alpn:
        raise SystemExit(f"ALPN chose {sock.selected_alpn_protocol()!r}, wanted {alpn!r}")
    return sock


def head(status: int, headers) -> dict:
    return {"status": status, "headers": [[str(name), str(value)] for name, value in headers]}


def http1(sock: socket.socket, path: str, first: bytes, second: bytes, wait: int) -> tuple[list, bytes]:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="POST", target=path,
                          headers=[("Host", "localhost"), ("Content-Length", str(len(first) + len(second)))])
    sock.sendall(conn.send(request) + conn.send(h11.Data(data=first)))
    heads, body, sent_rest = [], b"", False
    while True:
        if not sent_rest and sum(1 for h in heads if h["status"] < 200) >= wait:
            sock.sendall(conn.send(h11.Data(data=second)) + conn.send(h11.EndOfMessage()))
            sent_rest = True
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("connection closed before the response ended")
            conn.receive_data(data)
        elif isinstance(event, (h11.InformationalResponse, h11.Response)):
            heads.append(head(event.status_code, [(n.decode(), v.decode()) for n, v in event.headers]))
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return heads, body


def send_data(conn: h2.connection.H2Connection, stream: int, data: bytes, end_stream: bool) -> None:
    size = conn.max_outbound_frame_size
    for start in range(0, len(data), size):
        conn.send_data(stream, data[start:start + size], end_stream=end_stream and start + size >= len(data))


def http2(sock: socket.socket, tls: bool, path: str, first: bytes, second: bytes, wait: int) -> tuple[list, bytes]:
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "POST"), (":scheme", "https" if tls else "http"), (":path", path),
                               (":authority", "localhost"), ("content-length", str(len(first) + len(second)))])
    send_data(conn, stream, first, end_stream=False)
    sock.sendall(conn.data_to_send())
    heads, body, sent_rest = [], b"", False
    while True:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed before the stream ended")
        for event in conn.receive_data(data):
            if isinstance(event, (h2.events.InformationalResponseReceived, h2.events.ResponseReceived)):
                status = int(dict(event.headers)[":status"])
                heads.append(head(status, [(n, v) for n, v in event.headers if not n.startswith(":")]))
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                raise SystemExit(f"stream reset: {event.error_code}")
            elif isinstance(event, h2.events.StreamEnded):
                return heads, body
        if not sent_rest and sum(1 for h in heads if h["status"] < 200) >= wait:
            send_data(conn, stream, second, end_stream=True)
            sent_rest = True
        sock.sendall(conn.data_to_send())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=["h1", "h2"], required=True)
    parser.add_argument("--cafile", help="TLS, trusting this CA; plain (h2c with prior knowledge) without")
    parser.add_argument("--path", default="/files/")
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--second", type=int, required=True)
    parser.add_argument("--wait-informational", type=int, default=0)
    args = parser.parse_args()
    body = pattern(args.first + args.second)
    first, second = body[:args.first], body[args.first:]
    alpn = "h2" if args.protocol == "h2" else "http/1.1"
    with connect(args.port, args.cafile, alpn) as sock:
        if args.protocol == "h1":
            heads, received = http1(sock, args.path, first, second, args.wait_informational)
        else:
            heads, received = http2(sock, args.cafile is not None, args.path, first, second, args.wait_informational)
    json.dump({"heads": heads, "body": received.decode()}, sys.stdout)


if __name__ == "__main__":
    main()
