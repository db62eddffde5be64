"""tus-server on Redis Cluster: 3 masters made with `redis-cli --cluster create` and 3 tus-server instances
started with --redis redis+cluster://... (one seed: the rest comes from the slot map). Uploads move between the
instances chunk by chunk; the slot of a live upload is migrated to another master while it streams, and no
request fails (the instances follow ASK, TRYAGAIN and MOVED); the whole cluster restarted empty costs 503s, never
a 500 or a live upload's data file, and new uploads resume within seconds."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from cluster_helpers import RedisClusterSetup, cluster_slot
from tus_helpers import TusServer, create_upload, patch, request, server_binary, sha256


@pytest.fixture
def redis_cluster(tmp_path):
    setup = RedisClusterSetup(tmp_path / "redis").start()
    yield setup
    setup.stop()


@pytest.fixture
def instances(tmp_path, redis_cluster):
    upload_dir = tmp_path / "shared"
    upload_dir.mkdir()
    started = [TusServer(upload_dir, "--redis", redis_cluster.url, "--redis-prefix", "test:", "--lock-lease", "2",
                         "--loops", "2", log_path=tmp_path / f"instance-{index}.log").start() for index in range(3)]
    yield started
    for server in started:
        server.stop(grace=5)


@pytest.fixture
def instances_with(tmp_path, redis_cluster):
    started: list[TusServer] = []

    def make(*extra: str) -> list[TusServer]:
        upload_dir = tmp_path / "shared-extra"
        upload_dir.mkdir(exist_ok=True)
        started.append(TusServer(upload_dir, "--redis", redis_cluster.url, "--redis-prefix", "test:",
                                 *extra, log_path=tmp_path / "instance-extra.log").start())
        return started

    yield make
    for server in started:
        server.stop(grace=5)


def upload_id(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[1]


def test_uploads_over_three_instances(instances, redis_cluster):
    """10 uploads, each chunk to the next instance; every upload completes whole, HEAD agrees everywhere, and
    the upload records are spread over the three masters."""
    data = os.urandom(256 << 10)
    paths = []
    for turn in range(10):
        path = create_upload(instances[turn % 3].port, len(data))
        for index, offset in enumerate(range(0, len(data), 64 << 10)):
            response = patch(instances[(turn + index) % 3].port, path, offset, data[offset:offset + (64 << 10)])
            assert response is not None and response.status == 204, response
        paths.append(path)
    for path in paths:
        for server in instances:
            head = request(server.port, "HEAD", path, {"Tus-Resumable": "1.0.0"})
            assert head is not None and head.header("Upload-Offset") == str(len(data))
        assert sha256(instances[0].data_file(path).read_bytes()) == sha256(data)
    owners = {redis_cluster.owner(cluster_slot(upload_id(path))).port for path in paths}
    assert len(owners) >= 2, "ten random ids land on more than one master"


def test_slot_migrated_under_a_live_upload(instances, redis_cluster):
    """A client streams small PATCHes (round robin over the instances) while the upload's slot moves from its
    master to another: IMPORTING/MIGRATING, MIGRATE of its keys, SETSLOT NODE, with pauses between the steps.
    Every PATCH gets 204, none a 5xx, and the data arrives whole."""
    chunk = 16 << 10
    data = os.urandom(chunk * 120)
    path = create_upload(instances[0].port, len(data))
    slot = cluster_slot(upload_id(path))
    source = redis_cluster.owner(slot)
    target = next(node for node in redis_cluster.nodes if node.port != source.port)
    statuses: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def stream() -> None:
        for index, offset in enumerate(range(0, len(data), chunk)):
            response = patch(instances[index % 3].port, path, offset, data[offset:offset + chunk])
            statuses.append(0 if response is None else response.status)
            if response is not None and response.status != 204:
                failures.append(f"PATCH {index}: {response.status} {response.body[:200]!r}")
            time.sleep(0.01)
        done.set()

    client = threading.Thread(target=stream)
    client.start()
    while len(statuses) < 20:
        time.sleep(0.01)
    redis_cluster.begin_migration(slot, source, target)
    time.sleep(0.3)
    moved = redis_cluster.move_keys(slot, source, target)
    time.sleep(0.3)
    redis_cluster.finish_migration(slot, target)
    migrated_at = len(statuses)
    assert done.wait(60), "the upload stalled"
    client.join()
    assert f"test:{{{upload_id(path)}}}:info" in moved
    assert migrated_at < len(statuses), "the migration finished while the upload still streamed"
    assert statuses == [204] * len(statuses), failures
    head = request(instances[2].port, "HEAD", path, {"Tus-Resumable": "1.0.0"})
    assert head is not None and head.header("Upload-Offset") == str(len(data))
    assert sha256(instances[0].data_file(path).read_bytes()) == sha256(data)
    assert target.command("EXISTS", f"test:{{{upload_id(path)}}}:info") == b":1"


def test_cluster_restarted_empty(instances, redis_cluster):
    """Every master stopped, its state and cluster configuration lost, started again and the cluster created
    anew (what a Redis without persistence does on a restart). Meanwhile clients get 503, never a 500; the data
    file of the upload that was live is not deleted; new uploads succeed within seconds of the cluster being back."""
    data = os.urandom(64 << 10)
    live = create_upload(instances[0].port, len(data) * 2)
    assert patch(instances[1].port, live, 0, data).status == 204
    data_file = instances[0].data_file(live)
    statuses: list[tuple[str, int]] = []
    stop = threading.Event()

    def probe() -> None:
        turn = 0
        while not stop.is_set():
            server = instances[turn % 3]
            post = request(server.port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
            statuses.append(("POST", 0 if post is None else post.status))
            head = request(server.port, "HEAD", live, {"Tus-Resumable": "1.0.0"})
            statuses.append(("HEAD", 0 if head is None else head.status))
            turn += 1
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        redis_cluster.stop_all_and_forget()
        time.sleep(0.5)
        redis_cluster.start_all()
        time.sleep(0.5)
        redis_cluster.create()
        back_at = time.monotonic()
        first_created = None
        while time.monotonic() < back_at + 15:
            response = request(instances[2].port, "POST", "/files/",
                               {"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
            if response is not None and response.status == 201:
                first_created = time.monotonic() - back_at
                break
            time.sleep(0.05)
    finally:
        stop.set()
        prober.join()
    assert first_created is not None and first_created < 5, first_created
    assert not [s for s in statuses if s[1] >= 500 and s[1] != 503], statuses
    assert any(status == 503 for _, status in statuses), "the outage was seen"
    assert data_file.exists() and data_file.stat().st_size == len(data), "the live upload's bytes are kept"
    head = request(instances[0].port, "HEAD", live, {"Tus-Resumable": "1.0.0"})
    assert head is not None and head.status == 404, "its state is gone with Redis's (README: persistence)"


def test_cluster_urls_at_start(tmp_path):
    """A cluster URL with a database number is refused at start, naming why (a cluster has one)."""
    result = subprocess.run([server_binary(), "--port", "0", "--upload-dir", str(tmp_path),
                             "--redis", "redis+cluster://127.0.0.1:1/2"], capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert "database" in result.stderr + result.stdout, result.stderr


def test_min_replicas_on_a_cluster_without_replicas(instances_with, redis_cluster):
    """--redis-min-replicas 1 is accepted on a cluster; where the master holding an upload has no replica to
    confirm a change, the client gets 503 with Retry-After (never a 201 the cluster could lose, never a 500)."""
    servers = instances_with("--redis-min-replicas", "1")
    response = request(servers[0].port, "POST", "/files/", {"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    assert response is not None and response.status == 503, response
    assert response.header("Retry-After") is not None
