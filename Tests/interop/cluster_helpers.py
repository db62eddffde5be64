"""A real redis-server (alone, or 1 master + 1 replica + 3 sentinels) and a real nginx round-robin proxy for the
cluster tests, each started on a free port of 127.0.0.1 with its own temporary directory and stopped by PID."""

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
    def __init__(self, directory: pathlib.Path, *extra: str, sentinel_config: str | None = None,
                 tls: tuple[str, str, str] | None = None):
        """`extra` is appended to redis-server's command line; `sentinel_config` (the lines of sentinel.conf)
        starts `redis-sentinel` instead. `tls` = (certificate, key, CA): also serve TLS on `tls_port` (client
        certificates required, Redis's default); the plain port stays for the harness's PING and inspection
        commands."""
        self.directory = directory
        self.port = free_port()
        self.extra = list(extra)
        self.sentinel_config = sentinel_config
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
        common = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory), "--daemonize", "no"]
        if self.sentinel_config is None:
            arguments = [binary, *common, "--save", "", "--appendonly", "no", *self.tls_arguments(), *self.extra]
        else:
            config = self.directory / "sentinel.conf"  # the sentinel rewrites it as it learns the topology
            config.write_text(self.sentinel_config)
            arguments = [shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel", str(config), *common]
        log = open(self.directory / "redis.log", "ab")
        try:
            self.process = subprocess.Popen(arguments, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
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
        reply = self.command_raw(*arguments)
        return None if reply is None else reply.split(b"\r\n", 1)[0]

    def command_raw(self, *arguments: str) -> bytes | None:
        """One command over a fresh connection; what arrived within 0.2 s of the first bytes (whole replies of
        INFO, ROLE, SENTINEL ... on loopback)."""
        payload = f"*{len(arguments)}\r\n".encode()
        for argument in arguments:
            encoded = argument.encode()
            payload += b"$%d\r\n%s\r\n" % (len(encoded), encoded)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(payload)
                reply = b""
                while not reply.endswith(b"\r\n"):
                    piece = connection.recv(65536)
                    if not piece:
                        break
                    reply += piece
                    connection.settimeout(0.2)
                return reply
        except socket.timeout:
            return reply or None
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

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to replicas, sentinels or clients."""
        assert self.process is not None
        if self.paused:
            self.resume()
        self.process.kill()
        self.process.wait(timeout=5)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.paused:
            self.resume()
        stop_process(self.process)
        self.process = None


class SentinelSetup:
    """1 master + 1 replica + 3 sentinels (quorum 2; 1 s to call the master down, 3 s failover timeout), ready
    once the replica is in sync and every sentinel sees the replica and the two other sentinels."""

    NAME = "mymaster"

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.master = RedisServer(directory / "master")
        self.replica: RedisServer | None = None
        self.sentinels: list[RedisServer] = []

    def start(self, timeout: float = 20.0) -> "SentinelSetup":
        self.master.start()
        self.replica = RedisServer(
            self.directory / "replica", "--replicaof", "127.0.0.1", str(self.master.port)).start()
        self._await(lambda: b"master_link_status:up" in (self.replica.command_raw("INFO", "replication") or b""),
                    timeout, "replica in sync")
        config = (f"sentinel monitor {self.NAME} 127.0.0.1 {self.master.port} 2\n"
                  f"sentinel down-after-milliseconds {self.NAME} 1000\n"
                  f"sentinel failover-timeout {self.NAME} 3000\n"
                  f"sentinel parallel-syncs {self.NAME} 1\n")
        for index in range(3):
            self.sentinels.append(RedisServer(self.directory / f"sentinel-{index}", sentinel_config=config).start())
        for sentinel in self.sentinels:
            self._await(
                lambda: (sentinel.command("SENTINEL", "ckquorum", self.NAME) or b"").startswith(b"+OK 3 usable"),
                timeout, "sentinels see each other")
            self._await(lambda: (sentinel.command("SENTINEL", "replicas", self.NAME) or b"") == b"*1",
                        timeout, "sentinels see the replica")
        return self

    @staticmethod
    def _await(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sentinel set-up: {what}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{self.NAME}"

    def announced_master_port(self) -> int | None:
        reply = self.sentinels[0].command_raw("SENTINEL", "get-master-addr-by-name", self.NAME) or b""
        lines = reply.split(b"\r\n")
        return int(lines[4]) if len(lines) > 4 and lines[4].isdigit() else None

    def await_promotion(self, timeout: float = 30.0) -> None:
        """Until every sentinel names the replica as the master and the replica answers ROLE as one."""
        expected = str(self.replica.port).encode()
        self._await(lambda: all(
            (s.command_raw("SENTINEL", "get-master-addr-by-name", self.NAME) or b"").split(b"\r\n")[4:5] == [expected]
            for s in self.sentinels), timeout, "every sentinel names the promoted replica")
        self._await(lambda: b"master" in (self.replica.command_raw("ROLE") or b""), timeout, "replica is master")

    def restart_old_master(self) -> None:
        """Starts the killed master again (as a supervisor would), only once the failover is complete: without
        persistence it comes back empty, and a master that returned empty before the promotion would be synced
        from, wiping the replica. The sentinels turn it into a replica of the new master."""
        self.await_promotion()
        self.master.start()

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            if server is not None:
                server.stop()


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
