"""A cluster on Redis Sentinel: 1 master + 1 replica + 3 sentinels (real redis-server and redis-sentinel), and
tus-server instances started with --redis redis+sentinel://... The master is killed (-9) while uploads stream:
clients see 503s, never a 500, a 404 or an offset below one they were told (204) was stored, and every upload
completes once the replica is promoted and (the default --redis-min-replicas being 1) the old master, restarted
as a supervisor would, has rejoined as its replica."""

from __future__ import annotations

import time

import pytest

from cluster_helpers import SentinelSetup
from failover_helpers import KiB, MiB, Observations, check_final_offsets, stream_uploads
from tus_helpers import TusServer, request, sha256

LEASE_SECONDS = 2


@pytest.fixture
def sentinels(tmp_path):
    setup = SentinelSetup(tmp_path / "redis").start()
    yield setup
    setup.stop()


@pytest.fixture
def sentinel_cluster(tmp_path, sentinels):
    started: list[TusServer] = []
    upload_dir = tmp_path / "shared"
    upload_dir.mkdir()

    def make(count: int, *extra: str) -> list[TusServer]:
        for _ in range(count):
            started.append(TusServer(
                upload_dir, "--redis", sentinels.url, "--redis-prefix", "test:", "--lock-lease", str(LEASE_SECONDS),
                "--loops", "2", *extra, log_path=tmp_path / f"instance-{len(started)}.log").start())
        return started[-count:]

    yield make
    for server in started:
        server.stop(grace=5)


@pytest.mark.time_limit(120)
def test_master_killed_while_20_uploads_stream(sentinel_cluster, sentinels):
    servers = sentinel_cluster(3)
    seen = Observations()
    deadline = time.monotonic() + 60
    uploads, threads = stream_uploads(servers, 20, 4 * MiB, 128 * KiB, 0.05, seen, deadline)
    time.sleep(0.7)
    old_master = sentinels.master.port
    killed_at = time.monotonic()
    sentinels.master.kill()
    sentinels.restart_old_master()
    rejoined_at = time.monotonic()
    for thread in threads:
        thread.join(timeout=max(1, deadline - time.monotonic()))
    assert sentinels.announced_master_port() == sentinels.replica.port, "the replica was promoted"
    assert not seen.unexpected, seen.unexpected
    check_final_offsets(servers, seen)
    assert not seen.lost, f"acknowledged offsets lost: {seen.lost}"
    statuses = {status for _, _, status in seen.responses}
    assert 500 not in statuses and 404 not in statuses, statuses
    assert 503 in statuses, "the clients did see the failover"
    failover = seen.failover_seconds(killed_at)
    assert failover is not None and failover < 15, failover
    acknowledging = seen.failover_seconds(killed_at, "PATCH")
    assert acknowledging is not None
    print(f"failover seen by clients: first 503 to first success {failover:.2f} s, to first 204 {acknowledging:.2f} s"
          f" (old master {old_master} restarted {rejoined_at - killed_at:.2f} s after the kill)")
    for index, (path, data) in enumerate(uploads):
        server = servers[index % len(servers)]
        view = request(server.port, "HEAD", path)
        assert view is not None and view.header("Upload-Offset") == str(len(data)), (path, view)
        got = request(server.port, "GET", path)
        assert got is not None and got.status == 200 and sha256(got.body) == sha256(data), path
    switch_logged = [s for s in servers if "switched master mymaster" in s.log_text()]
    assert switch_logged, "instances followed +switch-master"


@pytest.mark.time_limit(120)
@pytest.mark.parametrize("min_replicas", [None, "0"], ids=["default", "min-replicas-0"])
def test_lagging_replica_promoted(sentinel_cluster, sentinels, min_replicas):
    """The replica falls behind while clients keep uploading (stopped, and its link cut as a partition would: a
    replica that is only stopped still gets everything the master wrote into its socket before dying), then the
    master is killed and the stale replica promoted. With the default (WAIT for 1 replica) nothing acknowledged is
    lost: while the replica is away no PATCH is acknowledged (503). With --redis-min-replicas 0 (today's behaviour
    without Sentinel) the acknowledgements continue and the failover loses them, which shows what the rule buys."""
    extra = () if min_replicas is None else ("--redis-min-replicas", min_replicas)
    servers = sentinel_cluster(2, *extra)
    seen = Observations()
    deadline = time.monotonic() + 60
    uploads, threads = stream_uploads(servers, 6, 4 * MiB, 64 * KiB, 0.05, seen, deadline)
    time.sleep(0.5)
    sentinels.replica.pause()
    assert sentinels.master.command("CLIENT", "KILL", "TYPE", "replica") == b":1"
    stopped_at = time.monotonic()
    time.sleep(2)
    sentinels.master.kill()
    time.sleep(0.3)
    sentinels.replica.resume()
    sentinels.restart_old_master()
    for thread in threads:
        thread.join(timeout=max(1, deadline - time.monotonic()))
    assert sentinels.announced_master_port() == sentinels.replica.port, "the stale replica was promoted"
    assert not seen.unexpected, seen.unexpected
    check_final_offsets(servers, seen)
    acknowledged_while_stopped = [r for r in seen.responses if r[1] == "PATCH" and r[2] == 204
                                  and stopped_at + 1.5 < r[0] < stopped_at + 2]
    if min_replicas is None:
        assert not seen.lost, f"acknowledged offsets lost: {seen.lost}"
        assert not acknowledged_while_stopped, "no PATCH acknowledged while no replica could confirm it"
        for index, (path, data) in enumerate(uploads):
            got = request(servers[index % 2].port, "GET", path)
            assert got is not None and got.status == 200 and sha256(got.body) == sha256(data), path
    else:
        assert acknowledged_while_stopped, "acknowledgements continued without the replica"
        assert seen.lost, "the promoted replica lacked offsets acknowledged while it was stopped"
