"""A tusd hook receiver for the tests, written from tusd's documented JSON (docs/hooks.md, pkg/hooks): it
records every hook request and answers from a per-type script."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

# A responder gets the parsed request and returns (status, JSON-able body) or None for {}.
Responder = Callable[[dict], "tuple[int, dict] | None"]


class HookReceiver:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.responders: dict[str, Responder] = {}
        self.delay_seconds = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length))
                with receiver.lock:
                    receiver.calls.append(request)
                    receiver.headers.append(dict(self.headers.items()))
                    responder = receiver.responders.get(request["Type"])
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                status, body = (responder(request) if responder else None) or (200, {})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> "HookReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of_type(self, hook_type: str) -> list[dict]:
        with self.lock:
            return [call for call in self.calls if call["Type"] == hook_type]

    def for_upload(self, upload_id: str) -> list[str]:
        with self.lock:
            return [call["Type"] for call in self.calls if call["Event"]["Upload"]["ID"] == upload_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"hook receiver: condition not met; calls: {[c['Type'] for c in self.calls]}")
            time.sleep(0.02)
