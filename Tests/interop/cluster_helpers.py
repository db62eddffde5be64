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
    """1 master + 1 replica + 3 sentinels (quorum 2; 3 s to call the master down, 3 s failover timeout), ready
    once the replica is in sync and every sentinel sees the replica and the two other sentinels."""

    NAME = "mymaster"
    # Not 1000: after a switch a sentinel rebuilds its link to the new master, reconnects at most once per second
    # and only then pings, so a down-after of 1 s can call the fresh master down before its first reply (seen on a
    # loaded 2-core box) and fail over again, promoting the restarted, empty old master.
    DOWN_AFTER_MS = 3000

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
                  f"sentinel down-after-milliseconds {self.NAME} {self.DOWN_AFTER_MS}\n"
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


def cluster_slot(key: str) -> int:
    """The Redis Cluster hash slot of `key` (CRC16/XModem of its hash tag, or of the whole key)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (ephemeral ports above 55535 have none)."""
    import random
    for _ in range(200):
        port = random.randint(20000, 49999)
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterSetup:
    """3 cluster-enabled masters joined by `redis-cli --cluster create --cluster-replicas 0`, ready when every
    node reports cluster_state:ok. `migrate_slot` moves one slot step by step (IMPORTING/MIGRATING, MIGRATE,
    SETSLOT NODE), the way `redis-cli --cluster reshard` does. With `replicas=1`, 3 masters + 3 replicas
    (`--cluster-replicas 1`), ready once every replica's link to its master is up: a master killed (-9) is
    replaced by its replica about `cluster-node-timeout` (2 s) later."""

    def __init__(self, directory: pathlib.Path, replicas: int = 0):
        self.directory = directory
        self.replicas = replicas
        self.nodes: list[RedisServer] = []

    def start(self, timeout: float = 20.0) -> "RedisClusterSetup":
        for index in range(3 * (1 + self.replicas)):
            node = RedisServer(self.directory / f"node-{index}", "--cluster-enabled", "yes",
                               "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
            node.port = cluster_port()
            self.nodes.append(node.start())
        self.create(timeout)
        return self

    def create(self, timeout: float = 20.0) -> None:
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"], check=True, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while b"cluster_state:ok" not in (node.command_raw("CLUSTER", "INFO") or b""):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster node {node.port} not ok")
                time.sleep(0.05)
        for replica in [node for node in self.nodes if self.is_replica(node)]:
            self.await_link(replica, deadline)

    @staticmethod
    def await_link(replica: RedisServer, deadline: float) -> None:
        while b"master_link_status:up" not in (replica.command_raw("INFO", "replication") or b""):
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {replica.port} not in sync")
            time.sleep(0.05)

    def live_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def cluster_nodes(self) -> list[list[str]]:
        """`CLUSTER NODES` as a live node sees it, one list of fields per node."""
        for node in self.live_nodes():
            text = (node.command_raw("CLUSTER", "NODES") or b"").decode()
            if text:
                return [line.split(" ") for line in text.splitlines() if line.count(" ") >= 7]
        return []

    def _node_at(self, address: str) -> RedisServer | None:
        port = int(address.split(":")[1].split("@")[0])
        return next((n for n in self.nodes if n.port == port), None)

    def is_replica(self, node: RedisServer) -> bool:
        return b"role:slave" in (node.command_raw("INFO", "replication") or b"")

    def masters(self) -> list[RedisServer]:
        """The nodes that serve slots now (flagged master, not failed), as a live node sees it."""
        found = []
        for fields in self.cluster_nodes():
            if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8:
                node = self._node_at(fields[1])
                if node is not None:
                    found.append(node)
        return found

    def replica_of(self, master: RedisServer) -> RedisServer:
        rows = self.cluster_nodes()
        master_id = self.node_id(master)
        for fields in rows:
            if fields[3] == master_id:
                node = self._node_at(fields[1])
                if node is not None:
                    return node
        raise LookupError(f"no replica of {master.port}")

    def await_promotion(self, replica: RedisServer, timeout: float = 20.0) -> float:
        """Until `replica` says it is a master and every live node reports cluster_state:ok; the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while not (b"role:master" in (replica.command_raw("INFO", "replication") or b"")
                   and all(b"cluster_state:ok" in (n.command_raw("CLUSTER", "INFO") or b"")
                           for n in self.live_nodes())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {replica.port} not promoted")
            time.sleep(0.05)
        return time.monotonic() - started

    def restart(self, node: RedisServer, timeout: float = 20.0) -> None:
        """Starts a stopped node again on its port and directory: it keeps its nodes.conf (so it rejoins with its
        old identity) but, without persistence, none of its data."""
        node.start()
        deadline = time.monotonic() + timeout
        while b"cluster_state:ok" not in (node.command_raw("CLUSTER", "INFO") or b""):
            if time.monotonic() > deadline:
                raise TimeoutError(f"restarted node {node.port} not ok")
            time.sleep(0.05)
        if self.is_replica(node):
            self.await_link(node, deadline)

    def stop_all_and_forget(self) -> None:
        """Every node stopped and its cluster configuration deleted: started again, they know nothing."""
        for node in self.nodes:
            node.stop()
            (node.directory / "nodes.conf").unlink(missing_ok=True)

    def start_all(self) -> None:
        for node in self.nodes:
            node.start()

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def node_id(self, node: RedisServer) -> str:
        return (node.command_raw("CLUSTER", "MYID") or b"").split(b"\r\n")[1].decode()

    def owner(self, slot: int) -> RedisServer:
        for fields in self.cluster_nodes():
            if len(fields) < 9 or "master" not in fields[2]:
                continue
            port = int(fields[1].split(":")[1].split("@")[0])
            for owned in fields[8:]:
                if owned.startswith("["):
                    continue
                low, _, high = owned.partition("-")
                if int(low) <= slot <= int(high or low):
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no owner of slot {slot}")

    def begin_migration(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        assert target.command("CLUSTER", "SETSLOT", str(slot), "IMPORTING", self.node_id(source)) == b"+OK"
        assert source.command("CLUSTER", "SETSLOT", str(slot), "MIGRATING", self.node_id(target)) == b"+OK"

    def move_keys(self, slot: int, source: RedisServer, target: RedisServer) -> list[str]:
        """MIGRATEs every key of the slot (one MIGRATE, atomic per call); the names moved."""
        reply = source.command_raw("CLUSTER", "GETKEYSINSLOT", str(slot), "100") or b""
        keys = [line.decode() for line in reply.split(b"\r\n")[2::2] if line]
        if keys:
            moved = source.command("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys)
            assert moved in (b"+OK", b"+NOKEY"), moved
        return keys

    def finish_migration(self, slot: int, target: RedisServer) -> None:
        target_id = self.node_id(target)
        for node in self.nodes:
            assert node.command("CLUSTER", "SETSLOT", str(slot), "NODE", target_id) == b"+OK"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
