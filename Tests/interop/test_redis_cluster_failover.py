"""tus-server on a Redis Cluster with replicas (3 masters + 3 replicas, `redis-cli --cluster create
--cluster-replicas 1`) and 3 instances: a master is killed (-9) while uploads stream. Clients see 503s during the
switch, never a 500 or a 404; every upload completes; no offset a 204 acknowledged is lost; the instances stop
connecting to the dead node once its replica took over. With --redis-min-replicas 1 a PATCH is acknowledged only
once the replica of the master that holds the upload has it, so a stale replica promoted loses nothing; with the
default (0) the same lag loses acknowledged offsets, which shows what the rule buys. One master restarted empty
(no persistence) costs the uploads it held, never a 500 storm or a data file, and new uploads go on at once."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from cluster_helpers import RedisClusterSetup, cluster_slot
from failover_helpers import KiB, MiB, Observations, check_final_offsets, stream_uploads
from tus_helpers import TusServer, create_upload, patch, request, sha256, wait_until

LEASE_SECONDS = 2


@pytest.fixture
def replicated_cluster(tmp_path):
    setup = RedisClusterSetup(tmp_path / "redis", replicas=1).start()
    yield setup
    setup.stop()


@pytest.fixture
def masters_only(tmp_path):
    setup = RedisClusterSetup(tmp_path / "redis").start()
    yield setup
    setup.stop()


def start_instances(tmp_path, url: str, count: int, *extra: str, lease: int = LEASE_SECONDS) -> list[TusServer]:
    upload_dir = tmp_path / "shared"
    upload_dir.mkdir(exist_ok=True)
    return [TusServer(upload_dir, "--redis", url, "--redis-prefix", "test:", "--lock-lease", str(lease),
                      "--loops", "2", *extra, log_path=tmp_path / f"instance-{index}.log").start()
            for index in range(count)]


@pytest.fixture
def instances(tmp_path):
    started: list[TusServer] = []

    def make(url: str, count: int, *extra: str, lease: int = LEASE_SECONDS) -> list[TusServer]:
        started.extend(start_instances(tmp_path, url, count, *extra, lease=lease))
        return started[-count:]

    yield make
    for server in started:
        server.stop(grace=5)


def upload_id(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[1]


def connections_accepted(port: int, seconds: float) -> int:
    """Listens on the dead node's port for `seconds`: how many connections the instances still open to it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    listener.settimeout(0.1)
    accepted = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                continue
            accepted += 1
            connection.close()
    finally:
        listener.close()
    return accepted


def check_uploads_whole(servers: list[TusServer], uploads: list[tuple[str, bytes]]) -> None:
    for index, (path, data) in enumerate(uploads):
        server = servers[index % len(servers)]
        view = request(server.port, "HEAD", path)
        assert view is not None and view.header("Upload-Offset") == str(len(data)), (path, view)
        got = request(server.port, "GET", path)
        assert got is not None and got.status == 200 and sha256(got.body) == sha256(data), path


@pytest.mark.time_limit(60)
def test_master_killed_while_uploads_stream(replicated_cluster, instances):
    """12 uploads stream over 3 instances; the master holding the first one is killed and its replica takes
    over (node timeout 2 s). Every upload completes, none lost an acknowledged offset, nothing answered 500 or
    404, the clients saw 503s and then service again; after the switch no instance connects to the dead node."""
    servers = instances(replicated_cluster.url, 3)
    seen = Observations()
    deadline = time.monotonic() + 45
    uploads, threads = stream_uploads(servers, 12, 3 * MiB, 128 * KiB, 0.05, seen, deadline)
    time.sleep(0.7)
    victim = replicated_cluster.owner(cluster_slot(upload_id(uploads[0][0])))
    replica = replicated_cluster.replica_of(victim)
    killed_at = time.monotonic()
    victim.kill()
    promoted_after = replicated_cluster.await_promotion(replica)
    time.sleep(1)  # the instances' next failures refresh the slot map
    reconnects = connections_accepted(victim.port, 3)
    for thread in threads:
        thread.join(timeout=max(1, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "an upload did not finish in time"
    assert not seen.unexpected, seen.unexpected
    check_final_offsets(servers, seen)
    assert not seen.lost, f"acknowledged offsets lost: {seen.lost}"
    statuses = {status for _, _, status in seen.responses}
    assert 500 not in statuses and 404 not in statuses, statuses
    assert 503 in statuses, "the clients did see the failover"
    # The clients of uploads on the killed master (the others see 503 only while the cluster is down as a whole).
    on_victim = {path for path, _ in uploads
                 if replicated_cluster.owner(cluster_slot(upload_id(path))).port == replica.port}
    failover = seen.failover_seconds(killed_at, paths=on_victim)
    assert failover is not None and failover < 15, failover
    acknowledging = seen.failover_seconds(killed_at, "PATCH", paths=on_victim)
    print(f"cluster failover seen by the {len(on_victim)} clients of the killed master's uploads: first 503 to first"
          f" success {failover:.2f} s, to first 204 {acknowledging:.2f} s (replica promoted {promoted_after:.2f} s"
          f" after the kill)")
    assert reconnects == 0, f"{reconnects} connections to the dead node after its replica took over"
    check_uploads_whole(servers, uploads)


def uploads_on_one_master(cluster: RedisClusterSetup, servers: list[TusServer], count: int, size: int) -> list[str]:
    """Creates uploads until `count` have their records on the first one's master (ids are random)."""
    first = create_upload(servers[0].port, size)
    victim = cluster.owner(cluster_slot(upload_id(first)))
    paths = [first]
    while len(paths) < count:
        path = create_upload(servers[len(paths) % len(servers)].port, size)
        if cluster.owner(cluster_slot(upload_id(path))).port == victim.port:
            paths.append(path)
    return paths


@pytest.mark.time_limit(60)
def test_no_423_once_the_replica_took_over(replicated_cluster, instances):
    """With the lease (10 s) longer than the lock timeout (3 s), as by default, 4 clients PATCH 1 byte in turn over
    3 instances on uploads of one master, which is killed. A PATCH whose lock release failed in the switch
    (connection lost, CLUSTERDOWN) sends it again until the promoted replica takes it, so once PATCHes succeed
    again none waits for a lease nobody holds: no 423 (with the release left failed, the replicated lease made
    the clients' PATCHes answer 423 until it lapsed, up to 10 s after the kill)."""
    servers = instances(replicated_cluster.url, 3, lease=10)
    paths = uploads_on_one_master(replicated_cluster, servers, 4, 1 << 20)
    victim = replicated_cluster.owner(cluster_slot(upload_id(paths[0])))
    replica = replicated_cluster.replica_of(victim)
    seen = Observations()
    stop = threading.Event()

    def client(index: int, path: str) -> None:
        offset, turn = 0, index
        while not stop.is_set():
            turn += 1
            response = patch(servers[turn % len(servers)].port, path, offset, b"x")
            status = response.status if response is not None else 0
            seen.saw("PATCH", status, path)
            if response is not None and status == 204:
                offset = int(response.header("Upload-Offset") or offset)
            elif status in (0, 409, 423, 503):
                head = request(servers[(turn + 1) % len(servers)].port, "HEAD", path)
                if head is not None and head.status == 200:
                    offset = int(head.header("Upload-Offset") or offset)
            time.sleep(0.002)

    threads = [threading.Thread(target=client, args=(index, path)) for index, path in enumerate(paths)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        killed_at = time.monotonic()
        victim.kill()
        replicated_cluster.await_promotion(replica, timeout=25)

        def served_again() -> float | None:
            with seen.lock:
                return next((t for t, m, status in seen.responses if t > killed_at and status == 204), None)

        wait_until(lambda: served_again() is not None, 15, message="a PATCH acknowledged after the switch")
        time.sleep(max(0.0, killed_at + 12 - time.monotonic()))  # past the lease of anything from before the kill
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    back = served_again()
    after = [(round(t - killed_at, 2), status) for t, _, status in seen.responses if t > back]
    assert after, "PATCHes went on after the switch"
    locked = [entry for entry in after if entry[1] == 423]
    assert not locked, f"423 after the switch (seconds after the kill, status): {locked}"
    assert 500 not in {status for _, status in after}


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("min_replicas", [None, "1"], ids=["default", "min-replicas-1"])
def test_lagging_replica_promoted(replicated_cluster, instances, min_replicas):
    """The replica of the master holding 4 streaming uploads is stopped and its link cut (a partition) while
    the clients keep uploading; then that master is killed, the replica resumed and promoted, and the old master
    restarted (it rejoins as the new master's replica). With --redis-min-replicas 1 no PATCH of those uploads is
    acknowledged while their master's replica is away, so nothing acknowledged is lost and every upload ends
    whole; with the default (0) the acknowledgements continue and the failover loses them."""
    extra = () if min_replicas is None else ("--redis-min-replicas", min_replicas)
    servers = instances(replicated_cluster.url, 2, *extra)
    seen = Observations()
    deadline = time.monotonic() + 40
    size = 3 * MiB
    # Uploads whose records all live on one master (ids are random: create until 4 share the first one's).
    first = create_upload(servers[0].port, size)
    victim = replicated_cluster.owner(cluster_slot(upload_id(first)))
    paths = [first]
    while len(paths) < 4:
        path = create_upload(servers[len(paths) % 2].port, size)
        if replicated_cluster.owner(cluster_slot(upload_id(path))).port == victim.port:
            paths.append(path)
    replica = replicated_cluster.replica_of(victim)
    uploads, threads = stream_uploads(servers, 0, size, 64 * KiB, 0.05, seen, deadline, paths=paths)
    time.sleep(0.5)
    replica.pause()
    assert victim.command("CLIENT", "KILL", "TYPE", "replica") == b":1"
    stopped_at = time.monotonic()
    time.sleep(2)
    victim.kill()
    time.sleep(0.3)
    replica.resume()
    replicated_cluster.await_promotion(replica, timeout=25)
    replicated_cluster.restart(victim)
    for thread in threads:
        thread.join(timeout=max(1, deadline - time.monotonic()))
    assert not seen.unexpected, seen.unexpected
    check_final_offsets(servers, seen)
    acknowledged_while_stopped = [r for r in seen.responses if r[1] == "PATCH" and r[2] == 204
                                  and stopped_at + 1.5 < r[0] < stopped_at + 2]
    if min_replicas is None:
        assert acknowledged_while_stopped, "acknowledgements continued without the replica"
        assert seen.lost, "the promoted replica lacked offsets acknowledged while it was stopped"
    else:
        assert not any(thread.is_alive() for thread in threads), "an upload did not finish in time"
        assert not seen.lost, f"acknowledged offsets lost: {seen.lost}"
        assert not acknowledged_while_stopped, "no PATCH acknowledged while no replica could confirm it"
        assert 500 not in {status for _, _, status in seen.responses}
        check_uploads_whole(servers, uploads)


@pytest.mark.time_limit(60)
def test_one_master_restarted_empty(masters_only, instances):
    """One of 3 masters (no replicas, no persistence) is killed and started again at once: it rejoins with its
    slots (nodes.conf kept) but none of its keys. A PATCH of an upload it held answers 404 afterwards (its state
    is gone, README: persistence), never 500; no data file is deleted; uploads on the other masters go on, and new
    uploads succeed within seconds."""
    servers = instances(masters_only.url, 3)
    chunk = os.urandom(64 << 10)
    paths = [create_upload(servers[i % 3].port, len(chunk) * 4) for i in range(12)]
    for path in paths:
        assert patch(servers[1].port, path, 0, chunk).status == 204
    victim = masters_only.owner(cluster_slot(upload_id(paths[0])))
    on_victim = {p for p in paths if masters_only.owner(cluster_slot(upload_id(p))).port == victim.port}
    assert 0 < len(on_victim) < len(paths), "12 random ids land on more than one master"
    statuses: list[tuple[str, int]] = []
    stop = threading.Event()

    def probe() -> None:
        turn = 0
        while not stop.is_set():
            server = servers[turn % 3]
            post = request(server.port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
            statuses.append(("POST", 0 if post is None else post.status))
            head = request(server.port, "HEAD", paths[turn % len(paths)], {"Tus-Resumable": "1.0.0"})
            statuses.append(("HEAD", 0 if head is None else head.status))
            turn += 1
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        victim.kill()
        time.sleep(0.3)
        restarted_at = time.monotonic()
        masters_only.restart(victim)
        first_created = None
        while time.monotonic() < restarted_at + 15:
            response = request(servers[2].port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
            if response is not None and response.status == 201:
                first_created = time.monotonic() - restarted_at
                break
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        prober.join()
    assert first_created is not None and first_created < 5, first_created
    assert not [s for s in statuses if s[1] >= 500 and s[1] != 503], statuses
    for path in paths:
        assert servers[0].data_file(path).stat().st_size == len(chunk), "no data file is deleted"
        # 503 until each loop of the instance has reconnected to the restarted master (backoff at most 2 s).
        deadline = time.monotonic() + 5
        response = patch(servers[2].port, path, len(chunk), chunk)
        while response is not None and response.status == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            response = patch(servers[2].port, path, len(chunk), chunk)
        assert response is not None
        assert response.status == (404 if path in on_victim else 204), (path, response)
