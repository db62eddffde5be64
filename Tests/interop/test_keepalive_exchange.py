"""Creations over one raw keep-alive connection: the socket keeps reading while a bodiless request is handled (no
pause and resume per request), so what a client sends meanwhile, or its half-close, must not change the answers."""

from __future__ import annotations

import socket

from tus_helpers import TusServer

POST = "POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n\r\n"


def read_responses(sock: socket.socket, count: int, deadline: float = 5.0) -> list[tuple[int, dict[str, str]]]:
    """`count` bodiless-or-small responses, in order: status and headers (names lower-cased)."""
    sock.settimeout(deadline)
    data = b""
    responses: list[tuple[int, dict[str, str]]] = []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(responses)} responses"
            data += chunk
            continue
        lines = data[:head_end].decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(data) < head_end + 4 + length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            data += chunk
        responses.append((int(lines[0].split()[1]), headers))
        data = data[head_end + 4 + length:]
    return responses


def test_pipelined_creations_are_answered_in_order(server: TusServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall((POST * 3).encode())
        responses = read_responses(sock, 3)
        assert [status for status, _ in responses] == [201, 201, 201]
        locations = [headers["location"] for _, headers in responses]
        assert len(set(locations)) == 3
        # The connection still serves a request sent after the pipelined ones.
        sock.sendall(POST.encode())
        [(status, headers)] = read_responses(sock, 1)
        assert status == 201 and "connection" not in headers


def test_half_closed_client_gets_its_creation_then_the_close(server: TusServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(POST.encode())
        sock.shutdown(socket.SHUT_WR)
        [(status, headers)] = read_responses(sock, 1)
        assert status == 201
        assert headers["location"].startswith(f"http://127.0.0.1/files/")
        assert headers["tus-resumable"] == "1.0.0"
        sock.settimeout(5)
        assert sock.recv(1) == b"", "the server closes after the response"
