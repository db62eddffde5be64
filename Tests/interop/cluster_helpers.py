"""A real redis-server and a real nginx round-robin proxy for the cluster tests, each started on a free port of
127.0.0.1 with its own temporary directory and stopped by PID."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time


def free_port() -> int:
    """Redis has no port 0: bind one ourselves and hand its number on (a tiny race, acceptable in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM by PID, SIGKILL after 5 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class RedisServer:
    def __init__(self, directory: pathlib.Path, tls: tuple[str, str, str] | None = None):
        """`tls` = (certificate, key, CA): also serve TLS on `tls_port` (client certificates required, Redis's
        default); the plain port stays for the harness's PING and inspection commands."""
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")
        try:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--daemonize", "no", *self.tls_arguments()],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.command("PING") == b"+PONG":
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("redis-server did not answer PING")

    def tls_arguments(self) -> list[str]:
        if not self.tls:
            return []
        certificate, key, ca = self.tls
        return ["--tls-port", str(self.tls_port), "--tls-cert-file", certificate, "--tls-key-file", key,
                "--tls-ca-cert-file", ca]

    def command(self, *arguments: str) -> bytes | None:
        """One command over a fresh connection; the first reply line (enough for PING, DBSIZE, EXISTS)."""
        payload = f"*{len(arguments)}\r\n".encode()
        for argument in arguments:
            encoded = argument.encode()
            payload += b"$%d\r\n%s\r\n" % (len(encoded), encoded)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(payload)
                reply = b""
                while not reply.endswith(b"\r\n"):
                    piece = connection.recv(4096)
                    if not piece:
                        break
                    reply += piece
                return reply.split(b"\r\n", 1)[0]
        except OSError:
            return None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.process is not None and self.paused:
            self.resume()
        stop_process(self.process)
        self.process = None


class NginxRoundRobin:
    """nginx in front of several tus-server instances, configured as an operator fronting a tus cluster would:
    round robin, streaming request bodies (proxy_request_buffering off), no body size limit, HTTP/1.1 upstream
    keep-alive, and the original Host and scheme forwarded so Location headers point at the proxy."""

    def __init__(self, directory: pathlib.Path, upstream_ports: list[int]):
        self.directory = directory
        self.port = free_port()
        self.upstream_ports = upstream_ports
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "NginxRoundRobin":
        self.directory.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in self.upstream_ports)
        config = f"""
daemon off;
worker_processes 1;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.directory}/body;
    proxy_temp_path {self.directory}/proxy;
    upstream tus {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://tus;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
"""
        config_path = self.directory / "nginx.conf"
        config_path.write_text(config)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [binary, "-c", str(config_path), "-p", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=open(self.directory / "stderr.log", "ab"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("nginx did not start listening")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/"

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
