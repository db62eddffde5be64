"""A cluster: three tus-server instances sharing one upload directory and one real redis-server (--redis). Any
instance answers any request for any upload; locks, release requests and expiry work across instances; a dead
instance's upload is resumed elsewhere within the lease; a paused Redis gives 503s, never wrong answers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time

import pytest
import requests

from cluster_helpers import NginxRoundRobin, RedisServer
from hook_receiver import HookReceiver
from tus_helpers import (
    OFFSET_STREAM, TUS_HEADERS, TusServer, create_upload, head_offset, patch, request, sha256, wait_until)

KiB = 1024
MiB = 1024 * KiB
LEASE_SECONDS = 2


@pytest.fixture
def redis_server(tmp_path):
    instance = RedisServer(tmp_path / "redis").start()
    yield instance
    instance.stop()


@pytest.fixture
def cluster(tmp_path, redis_server):
    """Starts instances on one shared directory and one Redis; stops them all after the test."""
    started: list[TusServer] = []
    upload_dir = tmp_path / "shared"
    upload_dir.mkdir()

    def make(count: int = 3, *extra: str) -> list[TusServer]:
        made = []
        for _ in range(count):
            server = TusServer(
                upload_dir, "--redis", redis_server.url, "--redis-prefix", "test:", "--lock-lease", str(LEASE_SECONDS),
                "--loops", "2", *extra, log_path=tmp_path / f"instance-{len(started)}.log").start()
            started.append(server)
            made.append(server)
        return made

    yield make
    for server in started:
        server.stop(grace=5)


def head(server: TusServer, path: str):
    response = request(server.port, "HEAD", path)
    assert response is not None
    return response


def get_body(server: TusServer, path: str) -> bytes:
    response = request(server.port, "GET", path)
    assert response is not None and response.status == 200, response
    return response.body


def test_every_instance_sees_the_same_upload(cluster):
    a, b, c = cluster()
    metadata = "filename aGVsbG8udHh0,empty"
    path = create_upload(a.port, 1000, metadata)
    views = [head(server, path) for server in (a, b, c)]
    for view in views:
        assert view.status == 200
        assert view.header("Upload-Offset") == "0"
        assert view.header("Upload-Length") == "1000"
        assert view.header("Upload-Metadata") == metadata, "metadata as received"
        assert view.header("Upload-Expires") == views[0].header("Upload-Expires")
    assert head(b, "/files/doesnotexist").status == 404


def test_round_robin_chunks_assemble_byte_identical(cluster):
    servers = cluster()
    data = os.urandom(3 * MiB + 12345)
    path = create_upload(servers[0].port, len(data))
    offset, turn = 0, 0
    while offset < len(data):
        server = servers[turn % len(servers)]
        assert head_offset(server.port, path) == offset
        response = patch(server.port, path, offset, data[offset:offset + 300 * KiB])
        assert response is not None and response.status == 204, response
        offset = int(response.header("Upload-Offset"))
        turn += 1
    for server in servers:
        assert sha256(get_body(server, path)) == sha256(data)
    assert head(servers[1], path).header("Upload-Expires") is None, "finished uploads never expire"


def start_slow_patch(server: TusServer, path: str, offset: int, declared: int, first: bytes) -> socket.socket:
    """A PATCH that sends `first` and then stalls with most of its declared body still owed."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head_bytes = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: {OFFSET_STREAM}\r\nUpload-Offset: {offset}\r\nContent-Length: {declared}\r\n\r\n").encode()
    connection.sendall(head_bytes + first)
    return connection


def lock_key(path: str) -> str:
    """The Redis key of an upload's lock lease (prefix `test:` as the cluster fixture sets it)."""
    return f"test:{{{path.rsplit('/', 1)[1]}}}:lock"


def read_status(connection: socket.socket, timeout: float) -> int | None:
    connection.settimeout(timeout)
    received = b""
    try:
        while b"\r\n" not in received:
            piece = connection.recv(4096)
            if not piece:
                break
            received += piece
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.1 (\d{3})", received)
    return int(match.group(1)) if match else None


def test_a_patch_on_another_instance_takes_over_a_stalled_one(cluster):
    a, b, _ = cluster()
    data = os.urandom(2 * MiB)
    path = create_upload(a.port, len(data))
    first = data[:700 * KiB]
    stalled = start_slow_patch(a, path, 0, len(data), first)
    try:
        time.sleep(0.5)  # let A write what it received
        started = time.monotonic()
        reported = head_offset(b.port, path)
        response = patch(b.port, path, reported, data[reported:reported + 100 * KiB])
        assert response is not None
        if response.status == 409:
            # A committed its bytes when it let go: the client re-reads the offset, as tus clients do.
            reported = head_offset(b.port, path)
            response = patch(b.port, path, reported, data[reported:reported + 100 * KiB])
        assert response is not None and response.status == 204, response
        assert time.monotonic() - started < 1.5, "the release crossed instances promptly"
        assert reported == len(first), "A's acknowledged-on-release bytes were kept"
        assert read_status(stalled, 5) == 400, "A's PATCH ended with ERR_UPLOAD_INTERRUPTED"
    finally:
        stalled.close()
    offset = int(response.header("Upload-Offset"))
    response = patch(a.port, path, offset, data[offset:])
    assert response is not None and response.status == 204
    assert sha256(get_body(a, path)) == sha256(data)


@pytest.mark.parametrize("splice", ["on", "off"])
def test_a_stalled_patch_is_visible_everywhere_within_a_second_and_resumable_there(cluster, splice):
    """The checkpoint is time-driven: a body that stalls (a phone whose network dropped) still has its bytes recorded
    within ~1 s, so HEAD on another instance catches up and a client resuming there at that offset gets 204, not
    409 (before, A recorded them only when B asked it to let go, after B had answered the HEAD)."""
    a, b, c = cluster(3, "--splice", splice)
    data = os.urandom(3 * MiB)
    path = create_upload(a.port, len(data))
    first = data[:700 * KiB]
    stalled = start_slow_patch(a, path, 0, len(data), first)
    try:
        sent = time.monotonic()
        seen: list[tuple[float, int]] = []
        while time.monotonic() - sent < 5:
            offset = head_offset(b.port, path)
            seen.append((time.monotonic() - sent, offset))
            if offset == len(first):
                break
            time.sleep(0.05)
        caught_up = seen[-1][0]
        assert seen[-1][1] == len(first), f"HEAD on B never caught up: {seen[-5:]}"
        # ~1 s after A wrote the bytes, plus the sync and the Redis round trip; slack for a loaded 2-core box.
        assert caught_up < 1.8, f"HEAD on B caught up after {caught_up:.2f} s"
        assert head_offset(c.port, path) == len(first), "every instance reads the same record"
        response = patch(c.port, path, len(first), data[len(first):len(first) + 300 * KiB])
        assert response is not None and response.status == 204, f"resuming at the offset HEAD gave: {response}"
        assert read_status(stalled, 5) == 400, "A's PATCH ended with ERR_UPLOAD_INTERRUPTED"
    finally:
        stalled.close()
    offset = int(response.header("Upload-Offset"))
    assert offset == len(first) + 300 * KiB
    response = patch(b.port, path, offset, data[offset:])
    assert response is not None and response.status == 204
    assert sha256(get_body(a, path)) == sha256(data)


def test_kill_9_of_the_holder_is_resumed_elsewhere_within_the_lease(cluster):
    a, b, _ = cluster()
    data = os.urandom(24 * MiB)
    path = create_upload(a.port, len(data))
    acknowledged = patch(a.port, path, 0, data[:4 * MiB])
    assert acknowledged is not None and acknowledged.status == 204
    stalled = start_slow_patch(a, path, 4 * MiB, len(data) - 4 * MiB, data[4 * MiB:14 * MiB])
    time.sleep(1.5)  # long enough for at least one durable checkpoint of the streaming PATCH
    a.kill()
    stalled.close()
    started = time.monotonic()
    offset = head_offset(b.port, path)
    assert 4 * MiB <= offset <= 14 * MiB, "never below what was acknowledged, never beyond what was sent"
    while True:
        response = patch(b.port, path, offset, data[offset:])
        assert response is not None
        if response.status == 204:
            break
        assert response.status == 423, response  # the dead holder's lease has not lapsed yet
        assert time.monotonic() - started < LEASE_SECONDS + 4
    assert time.monotonic() - started < LEASE_SECONDS + 4
    assert sha256(get_body(b, path)) == sha256(data)


def test_delete_on_one_instance_stops_a_patch_streaming_into_another(cluster):
    a, _, c = cluster()
    path = create_upload(a.port, 4 * MiB)
    stalled = start_slow_patch(a, path, 0, 4 * MiB, os.urandom(256 * KiB))
    try:
        time.sleep(0.3)
        response = request(c.port, "DELETE", path)
        assert response is not None and response.status == 204, response
        assert read_status(stalled, 5) == 400
    finally:
        stalled.close()
    for server in (a, c):
        assert head(server, path).status == 410


@pytest.mark.time_limit(60)
def test_expiry_sweeps_each_upload_once_across_instances(cluster, tmp_path):
    servers = cluster(3, "--expiration", "1")
    paths = [create_upload(servers[i % 3].port, 100) for i in range(9)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any((servers[0].upload_dir / p.rsplit("/", 1)[1]).exists() for p in paths):
        time.sleep(0.2)
    for p in paths:
        assert not (servers[0].upload_dir / p.rsplit("/", 1)[1]).exists(), "swept"
        assert head(servers[1], p).status == 410
    time.sleep(1.5)  # let every instance finish its current sweep
    removed = 0
    for server in servers:
        removed += sum(int(n) for n in re.findall(r"expired (\d+) upload", server.log_text()))
    assert removed == len(paths), "each upload removed exactly once, by whichever instance locked it first"


@pytest.mark.time_limit(60)
def test_paused_redis_gives_503_then_full_service(cluster, redis_server):
    a, b, _ = cluster()
    data = os.urandom(300 * KiB)
    path = create_upload(a.port, len(data))
    assert patch(a.port, path, 0, data[:100 * KiB]).status == 204
    redis_server.pause()
    try:
        started = time.monotonic()
        during = request(b.port, "HEAD", path)
        assert during is not None and during.status == 503, during
        assert during.header("Retry-After") is not None
        assert time.monotonic() - started < 5, "a paused Redis fails requests within the command timeout"
        created = request(a.port, "POST", "/files/", {"Upload-Length": "5"})
        assert created is not None and created.status == 503
        refused = patch(a.port, path, 100 * KiB, data[100 * KiB:200 * KiB])
        assert refused is not None and refused.status == 503
        time.sleep(2)
    finally:
        redis_server.resume()
    deadline = time.monotonic() + 10
    while True:
        response = request(b.port, "HEAD", path)
        if response is not None and response.status == 200:
            break
        assert time.monotonic() < deadline, "service came back after Redis did"
        time.sleep(0.2)
    assert response.header("Upload-Offset") == str(100 * KiB), "no wrong offset after the outage"
    assert patch(b.port, path, 100 * KiB, data[100 * KiB:]).status == 204
    assert sha256(get_body(a, path)) == sha256(data)
    outage_lines = [line for line in a.log_text().splitlines() if "redis" in line.lower() and "unreachable" in line.lower()]
    assert 1 <= len(outage_lines) <= 3, f"the outage is logged once per episode, not per request: {outage_lines}"


@pytest.mark.time_limit(60)
def test_redis_restarted_empty(cluster, redis_server):
    """Redis (no persistence) stopped and started again empty while a PATCH streams into one upload and clients
    poll: they get 503 while it is away and 404 for the forgotten uploads afterwards, never a 500; the streaming
    PATCH ends without a 500; no data file is deleted; new uploads succeed within seconds (README: persistence)."""
    a, b, c = cluster()
    data = os.urandom(256 * KiB)
    idle = create_upload(a.port, len(data))
    assert patch(b.port, idle, 0, data[:64 * KiB]).status == 204
    live = create_upload(a.port, len(data))
    streaming = start_slow_patch(c, live, 0, len(data), data[:100 * KiB])
    statuses: list[tuple[str, int]] = []
    try:
        time.sleep(1.3)  # a checkpoint of the streamed bytes
        redis_server.stop()
        for server in (a, b):
            response = request(server.port, "HEAD", idle)
            statuses.append(("HEAD", 0 if response is None else response.status))
        redis_server.start()
        restarted_at = time.monotonic()
        first_created = None
        while time.monotonic() < restarted_at + 15:
            response = request(b.port, "POST", "/files/", {"Upload-Length": "1"})
            statuses.append(("POST", 0 if response is None else response.status))
            if response is not None and response.status == 201:
                first_created = time.monotonic() - restarted_at
                break
            time.sleep(0.05)
        streaming.sendall(data[100 * KiB:])
        streamed = read_status(streaming, 10)
    finally:
        streaming.close()
    assert first_created is not None and first_created < 5, first_created
    assert ("HEAD", 503) in statuses, statuses
    assert not [s for s in statuses if s[1] >= 500 and s[1] != 503], statuses
    assert streamed in (503, 404, 409, 400), f"the streaming PATCH ends without a 500 or a 204: {streamed}"
    for path in (idle, live):
        for server in (a, b, c):
            # 503 until each of the instance's loops has reconnected (its backoff is at most 2 s), then 404.
            deadline = time.monotonic() + 5
            response = request(server.port, "HEAD", path)
            while response is not None and response.status == 503 and time.monotonic() < deadline:
                time.sleep(0.1)
                response = request(server.port, "HEAD", path)
            assert response is not None and response.status == 404, (path, response)
    assert a.data_file(idle).stat().st_size == 64 * KiB, "the idle upload's bytes are kept"
    assert a.data_file(live).exists(), "the streaming upload's data file is kept"


@pytest.mark.time_limit(90)
def test_tuspy_and_aiotus_through_a_round_robin_proxy(cluster, tmp_path):
    servers = cluster(3, "--behind-proxy", "--log-level", "debug")
    proxy = NginxRoundRobin(tmp_path / "nginx", [server.port for server in servers]).start()
    try:
        from tusclient import client as tus_client

        data = os.urandom(5 * MiB + 7)
        source = tmp_path / "upload.bin"
        source.write_bytes(data)
        uploader = tus_client.TusClient(proxy.endpoint).uploader(
            str(source), chunk_size=512 * KiB, metadata={"filename": "upload.bin"})
        uploader.upload()
        url = uploader.url
        assert url.startswith(f"http://127.0.0.1:{proxy.port}/files/"), url
        assert sha256(requests.get(url, timeout=30).content) == sha256(data)

        import asyncio

        import aiotus

        async def upload_with_aiotus() -> str:
            config = aiotus.RetryConfiguration(max_retry_period_seconds=5)
            with open(source, "rb") as stream:
                location = await aiotus.upload(
                    proxy.endpoint, stream, {"filename": b"again.bin"}, config=config, chunksize=384 * KiB)
            return str(location)

        location = asyncio.run(upload_with_aiotus())
        assert sha256(requests.get(location, timeout=30).content) == sha256(data)
        served = [server for server in servers if re.search(r"PATCH /files/\S+ -> 204", server.log_text())]
        assert len(served) >= 2, "the proxy spread the PATCH requests over several instances"
    finally:
        proxy.stop()


def test_final_created_on_one_instance_completes_when_another_finishes_its_last_partial(cluster, redis_server):
    """concatenation-unfinished across instances: the final is created on A while partial b is unfinished; b's last
    bytes land on B, which assembles the final right after (Redis shows it complete before anyone asks); C answers
    it complete and every instance serves its bytes."""
    a, b, c = cluster()
    extensions = set((request(a.port, "OPTIONS", "/files/").header("Tus-Extension") or "").split(","))
    assert extensions == {
        "creation", "creation-with-upload", "creation-defer-length", "termination", "concatenation",
        "concatenation-unfinished", "checksum", "checksum-trailer", "expiration"}, "all nine with --redis"
    first, second = os.urandom(700 * KiB), os.urandom(900 * KiB)
    paths = []
    for length in (len(first), len(second)):
        response = request(a.port, "POST", "/files/", {"Upload-Concat": "partial", "Upload-Length": str(length)})
        assert response is not None and response.status == 201
        paths.append("/" + response.header("Location").split("/", 3)[3])
    assert patch(a.port, paths[0], 0, first).status == 204
    assert patch(b.port, paths[1], 0, second[:100 * KiB]).status == 204
    created = request(a.port, "POST", "/files/", {"Upload-Concat": f"final;{paths[0]} {paths[1]}"})
    assert created is not None and created.status == 201
    final = "/" + created.header("Location").split("/", 3)[3]
    for server in (a, b, c):
        view = head(server, final)
        assert view.status == 200 and view.header("Upload-Offset") is None
        assert view.header("Upload-Length") == str(len(first) + len(second))
        assert view.header("Upload-Concat") == f"final;{paths[0]} {paths[1]}"
    assert patch(b.port, paths[1], 100 * KiB, second[100 * KiB:]).status == 204

    def recorded_offset() -> str:
        key = f"test:{{{final.rsplit('/', 1)[1]}}}:info"
        reply = subprocess.run(["redis-cli", "-p", str(redis_server.port), "HGET", key, "offset"],
                               capture_output=True, text=True, timeout=5)
        return reply.stdout.strip()
    # B assembled it right after the PATCH that completed b: nobody has asked about the final yet.
    wait_until(lambda: recorded_offset() == str(len(first) + len(second)), timeout=5, message="final complete in Redis")
    done = head(c, final)
    assert done.header("Upload-Offset") == done.header("Upload-Length") == str(len(first) + len(second))
    for server in (a, b, c):
        assert sha256(get_body(server, final)) == sha256(first + second)


def test_a_final_completed_later_is_finished_once_across_instances(cluster):
    """concatenation-unfinished with hooks: the final is created on A while partial b is unfinished; b's last PATCH
    lands on B while HEADs and GETs of the final race it on A and C. Whoever assembles the final finishes it: exactly
    one pre-finish, then one post-finish, reach the receiver, and the post-finish describes the final."""
    receiver = HookReceiver().start()
    try:
        a, b, c = cluster(3, "--hooks-http", receiver.url, "--hooks-enabled-events", "pre-finish,post-finish")
        first, second = os.urandom(300 * KiB), os.urandom(200 * KiB)
        paths = []
        for length in (len(first), len(second)):
            response = request(a.port, "POST", "/files/", {"Upload-Concat": "partial", "Upload-Length": str(length)})
            assert response is not None and response.status == 201
            paths.append("/" + response.header("Location").split("/", 3)[3])
        assert patch(a.port, paths[0], 0, first).status == 204
        assert patch(b.port, paths[1], 0, second[:100 * KiB]).status == 204
        created = request(a.port, "POST", "/files/", {"Upload-Concat": f"final;{paths[0]} {paths[1]}"})
        assert created is not None and created.status == 201
        final = "/" + created.header("Location").split("/", 3)[3]
        final_id = final.rsplit("/", 1)[1]
        total = len(first) + len(second)
        stop = threading.Event()

        def look(server: TusServer, method: str) -> None:
            while not stop.is_set():
                response = request(server.port, method, final)
                assert response is not None and response.status == 200
                if response.header("Upload-Offset") == str(total) or (method == "GET" and response.body):
                    return
        lookers = [threading.Thread(target=look, args=(a, "HEAD")), threading.Thread(target=look, args=(c, "GET"))]
        for looker in lookers:
            looker.start()
        try:
            assert patch(b.port, paths[1], 100 * KiB, second[100 * KiB:]).status == 204
        finally:
            for looker in lookers:
                looker.join(timeout=10)
            stop.set()
        receiver.wait_for(lambda: "post-finish" in receiver.for_upload(final_id))
        time.sleep(1.0)  # a second finish from another instance would arrive meanwhile
        assert receiver.for_upload(final_id) == ["pre-finish", "post-finish"]
        upload = [call for call in receiver.of_type("post-finish")
                  if call["Event"]["Upload"]["ID"] == final_id][0]["Event"]["Upload"]
        assert (upload["Size"], upload["Offset"], upload["SizeIsDeferred"]) == (total, total, False)
        assert (upload["IsFinal"], upload["IsPartial"]) == (True, False)
        assert upload["PartialUploads"] == [path.rsplit("/", 1)[1] for path in paths]
        assert sha256(get_body(b, final)) == sha256(first + second)
        time.sleep(0.3)
        assert receiver.for_upload(final_id) == ["pre-finish", "post-finish"], "later looks finish nothing again"
    finally:
        receiver.stop()


def test_unfinished_final_lives_with_its_partials_and_expires_after_them(cluster, redis_server):
    """With Redis state and locks: a final lives past its own expiry while its partial keeps progressing (a sweep,
    under the final's Redis lock, moves the final's expiry to the partial's), goes once the partial has expired, and a
    final its last PATCH completed leaves the expiry index."""
    a, b = cluster(2, "--expiration", "3")  # a sweep every 3 s

    def redis(*args: str) -> str:
        reply = subprocess.run(["redis-cli", "-p", str(redis_server.port), *args],
                               capture_output=True, text=True, timeout=5)
        return reply.stdout.strip()

    def final_of(*partials: str) -> str:
        created = request(a.port, "POST", "/files/", {"Upload-Concat": "final;" + " ".join(partials)})
        assert created is not None and created.status == 201 and created.header("Upload-Expires") is not None
        return "/" + created.header("Location").split("/", 3)[3]

    partials = []
    for length in (10, 2):
        response = request(a.port, "POST", "/files/", {"Upload-Concat": "partial", "Upload-Length": str(length)})
        assert response is not None and response.status == 201
        partials.append("/" + response.header("Location").split("/", 3)[3])
    slow, quick = partials
    final, completed = final_of(slow), final_of(quick)
    final_id, completed_id = final.rsplit("/", 1)[1], completed.rsplit("/", 1)[1]
    created_expiry = int(redis("HGET", f"test:{{{final_id}}}:info", "expires"))

    assert patch(b.port, quick, 0, b"xy").status == 204
    wait_until(lambda: redis("HGET", f"test:{{{completed_id}}}:info", "offset") == "2", timeout=5,
               message="the second final is complete")
    assert redis("ZSCORE", "test:expiring", completed_id) == "", "a complete final leaves the expiry index"

    for offset in range(7):  # ~7 s of progress on the partial: past the final's own 3 s, and a sweep in between
        assert patch((a, b)[offset % 2].port, slow, offset, b"z").status == 204
        view = head(b, final)
        assert view.status == 200 and view.header("Upload-Expires") is not None, f"alive at byte {offset}"
        time.sleep(1)
    assert int(redis("HGET", f"test:{{{final_id}}}:info", "expires")) > created_expiry, "a sweep moved it"

    wait_until(lambda: redis("EXISTS", f"test:{{{final_id}}}:info") == "0", timeout=15, interval=0.2,
               message="the final is swept once its partial expired")
    for server in (a, b):
        assert head(server, final).status == 410
        assert head(server, slow).status == 410
    done = head(a, completed)
    assert done.status == 200 and done.header("Upload-Offset") == "2" and done.header("Upload-Expires") is None


def test_a_patch_whose_lease_was_lost_answers_503_not_500(cluster, redis_server):
    """A lease that lapsed while Redis was unreachable (or was lost in a failover) and went to someone else: the
    PATCH's bytes are written but its commit is refused by the token check, which the client sees as a 503 to
    retry (it resumes from HEAD's offset), not as a 500."""
    a, b = cluster(2, "--lock-lease", "30")  # no renewal (every 10 s) notices the theft before the commit does
    data = os.urandom(400 * KiB)
    path = create_upload(a.port, len(data))
    stalled = start_slow_patch(a, path, 0, len(data), data[:100 * KiB])
    try:
        time.sleep(0.3)
        key = lock_key(path)
        stolen = subprocess.run(["redis-cli", "-p", str(redis_server.port), "SET", key, "someone-else", "PX", "60000"],
                                capture_output=True, text=True, timeout=5)
        assert stolen.stdout.strip() == "OK"
        stalled.sendall(data[100 * KiB:])
        assert read_status(stalled, 5) == 503
    finally:
        stalled.close()
    assert head_offset(b.port, path) == 0, "the refused commit moved nothing"



def read_response(connection: socket.socket, timeout: float) -> bytes:
    """One response (head and its `Content-Length` body) as raw bytes, or what arrived before a close or `timeout`."""
    connection.settimeout(timeout)
    received = b""
    try:
        while True:
            head, separator, body = received.partition(b"\r\n\r\n")
            if separator:
                length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
                if len(body) >= (int(length.group(1)) if length else 0):
                    return received
            piece = connection.recv(4096)
            if not piece:
                return received
            received += piece
    except OSError:
        return received


def test_a_patch_whose_lease_lapsed_answers_503_to_retry(cluster, redis_server):
    """The lease went while nobody else took it (it lapsed while Redis was unreachable): the holder's next renewal
    finds it gone. That is no other request taking the upload over (tus's 400), but a transient condition of the
    server: 503 with Retry-After, and the client resumes from HEAD."""
    (a,) = cluster(1)
    data = os.urandom(400 * KiB)
    path = create_upload(a.port, len(data))
    stalled = start_slow_patch(a, path, 0, len(data), data[:100 * KiB])
    try:
        time.sleep(0.3)
        key = lock_key(path)
        assert redis_server.command("DEL", key) == b":1"
        # The next renewal (every lease/3) finds it gone.
        answer = read_response(stalled, LEASE_SECONDS + 3)
    finally:
        stalled.close()
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert re.search(rb"(?i)\r\nretry-after: 1\r\n", answer), answer[:300]
    assert b"ERR_UPLOAD_LOCK_LOST" in answer, answer[:300]
    offset = head_offset(a.port, path)
    response = patch(a.port, path, offset, data[offset:])
    assert response.status == 204, response


class ReplyDroppingProxy:
    """TCP between tus-server and Redis that, once armed, forwards the first lock acquisition (`SET <lock> ... NX`)
    to Redis and then closes both sides before the reply comes back: Redis ran the command, the server never
    learns. Every other connection and command is forwarded unchanged. Bounded: threads are daemons, sockets time
    out, `stop` closes everything."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            self.sockets += [client, upstream]
            muted = threading.Event()  # set: what Redis answers on this connection is dropped
            threading.Thread(target=self._pump, args=(client, upstream, True, muted), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False, muted), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_server: bool, muted: threading.Event) -> None:
        source.settimeout(None)
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                break
            is_acquire = from_server and b"\r\nSET\r\n" in data and b":lock\r\n" in data and b"\r\nNX\r\n" in data
            drop = is_acquire and self.armed.is_set() and not self.dropped.is_set()
            if drop:
                muted.set()
            if muted.is_set() and not from_server:
                continue
            try:
                target.sendall(data)
            except OSError:
                return
            if drop:
                self.dropped.set()
                time.sleep(0.2)  # Redis runs it; its reply waits in our socket, unread
                for sock in (source, target):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()
                return
        for sock in (source, target):
            try:
                sock.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


def test_a_lock_whose_acquire_reply_was_lost_does_not_block_the_retry(tmp_path, redis_server):
    """The connection to Redis drops after Redis set the lock but before its reply arrived: the PATCH gets 503. Its
    client's retry must get the upload at once, not wait until that lease (30 s here) lapses, answering 423 meanwhile:
    the instance recognises the lease as its own and takes it over (and releases the lost one once Redis answers)."""
    proxy = ReplyDroppingProxy(redis_server.port)
    server = TusServer(
        tmp_path / "uploads", "--redis", f"redis://127.0.0.1:{proxy.port}", "--redis-prefix", "test:",
        "--lock-lease", "30", "--loops", "1", log_path=tmp_path / "server.log").start()
    try:
        data = os.urandom(64 * KiB)
        path = create_upload(server.port, len(data))
        proxy.armed.set()
        first = patch(server.port, path, 0, data[:KiB])
        assert proxy.dropped.is_set(), "the acquisition went through the proxy"
        assert first.status == 503, first
        key = lock_key(path)
        assert redis_server.command("PTTL", key) not in (b":-2", None), "Redis did set the lock"
        started = time.monotonic()
        statuses = []
        while time.monotonic() - started < 10:
            response = patch(server.port, path, 0, data)
            statuses.append(response.status if response is not None else None)
            if statuses[-1] == 204:
                break
            time.sleep(0.2)
        assert statuses[-1] == 204, statuses
        assert time.monotonic() - started < 5, statuses
        assert head_offset(server.port, path) == len(data)
    finally:
        server.stop(grace=5)
        proxy.stop()

def test_a_draft_creation_stalled_on_one_instance_is_resumed_on_another(cluster):
    """draft-ietf-httpbis-resumable-upload on the same cluster: the creation's 104 names the upload before its body
    is read; the client stalls, asks another instance for the offset, and that instance's PATCH takes the upload over
    from the stalled creation (across instances, through Redis) and completes it byte-exact."""
    a, b, _ = cluster()
    data = os.urandom(2 * MiB)
    first = data[:600 * KiB]
    connection = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    try:
        connection.sendall(
            (f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Draft-Interop-Version: 6\r\n"
             f"Upload-Complete: ?1\r\nContent-Length: {len(data)}\r\n\r\n").encode() + first)
        received = b""
        while b"\r\n\r\n" not in received:
            piece = connection.recv(4096)
            assert piece, "closed before the 104"
            received += piece
        assert received.startswith(b"HTTP/1.1 104 "), received[:100]
        location = re.search(rb"(?i)\r\nlocation: ([^\r]+)", received).group(1).decode()
        path = "/files/" + location.rsplit("/", 1)[1]
        time.sleep(0.5)  # let A write what it received
        draft = {"Upload-Draft-Interop-Version": "6"}
        response = None
        for _ in range(3):
            status = requests.head(b.url(path), headers=draft, timeout=10)
            assert status.status_code == 204 and status.headers["Upload-Length"] == str(len(data))
            offset = int(status.headers["Upload-Offset"])
            response = requests.patch(b.url(path), data=data[offset:], timeout=30, headers={
                **draft, "Upload-Offset": str(offset), "Upload-Complete": "?1",
                "Content-Type": "application/partial-upload"})
            if response.status_code != 409:  # A committed more when it let go: read the offset again
                break
        assert response is not None and response.status_code == 201, (response.status_code, response.text)
        assert response.headers["Upload-Complete"] == "?1"
    finally:
        connection.close()
    assert sha256(get_body(a, path)) == sha256(data)


def draft_upload_id(headers: dict[str, str]) -> str:
    return headers["location"].rsplit("/", 1)[1]


def test_a_draft_upload_at_its_length_waits_on_one_instance_and_is_completed_by_another(cluster):
    """Section 12 on Redis: content up to `Upload-Length` sent with `Upload-Complete: ?0` on A leaves the upload
    incomplete for every instance (no finish, HEAD says ?0); the empty `?1` PATCH on B completes it, as on the file
    store, and it is finished exactly once."""
    from test_ietf_draft import draft_patch, h1_request
    receiver = HookReceiver().start()
    try:
        a, b, c = cluster(3, "--hooks-http", receiver.url, "--hooks-enabled-events", "pre-finish,post-finish")
        whole = os.urandom(70_000)
        draft = {"Upload-Draft-Interop-Version": "8"}
        status, headers, _ = h1_request(a, "POST", "/files/", {
            **draft, "Upload-Complete": "?0", "Upload-Length": str(len(whole))}, whole)
        assert status == 201 and headers["upload-complete"] == "?0", (status, headers)
        upload_id = draft_upload_id(headers)
        path = "/files/" + upload_id
        for server in (a, b, c):
            status, headers, _ = h1_request(server, "HEAD", path, draft)
            assert (status, headers["upload-offset"], headers["upload-complete"]) == (204, str(len(whole)), "?0")
        time.sleep(0.5)  # a finish fired at the length would reach the receiver meanwhile
        assert receiver.for_upload(upload_id) == [], "not complete until a request says so"
        status, headers, _ = draft_patch(b, path, 8, len(whole), "?1", b"")
        assert status == 201 and headers["upload-complete"] == "?1", (status, headers)
        for server in (a, c):
            status, headers, _ = h1_request(server, "HEAD", path, draft)
            assert (status, headers["upload-complete"]) == (204, "?1")
        receiver.wait_for(lambda: "post-finish" in receiver.for_upload(upload_id))
        time.sleep(0.5)
        assert receiver.for_upload(upload_id) == ["pre-finish", "post-finish"]
        assert sha256(get_body(c, path)) == sha256(whole)
    finally:
        receiver.stop()


def test_a_repr_digest_declared_at_creation_is_verified_at_completion_on_another_instance(cluster):
    """Rows G1/G3 across instances: the creation's `Repr-Digest` and `Want-Repr-Digest` live in Redis, so B's
    completing PATCH checks the stored bytes against the digest A was given, and answers the `Repr-Digest` asked
    for; a representation unlike its digest is refused there (400, `?1` from v7) and gone everywhere."""
    import base64
    import hashlib
    from test_ietf_draft import draft_patch, h1_request
    a, b, c = cluster()
    whole = os.urandom(90_000)
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(whole).digest()).decode() + ":"
    draft = {"Upload-Draft-Interop-Version": "7"}
    status, headers, _ = h1_request(a, "POST", "/files/", {
        **draft, "Upload-Complete": "?0", "Repr-Digest": digest, "Want-Repr-Digest": "sha-256=5"}, whole[:30_000])
    assert status == 201 and headers["upload-complete"] == "?0", (status, headers)
    path = "/files/" + draft_upload_id(headers)
    status, headers, _ = draft_patch(b, path, 7, 30_000, "?1", whole[30_000:])
    assert status == 201 and headers["upload-complete"] == "?1", (status, headers)
    assert headers["repr-digest"] == digest
    assert sha256(get_body(c, path)) == sha256(whole)

    status, headers, _ = h1_request(a, "POST", "/files/", {
        **draft, "Upload-Complete": "?0", "Repr-Digest": digest}, whole[:30_000])
    assert status == 201
    wrong = "/files/" + draft_upload_id(headers)
    status, headers, _ = draft_patch(b, wrong, 7, 30_000, "?1", bytes(60_000))
    assert status == 400 and headers["upload-complete"] == "?1", (status, headers)
    status, _, _ = h1_request(c, "HEAD", wrong, draft)
    assert status in (404, 410), "the refused representation is gone on every instance"


def test_an_empty_draft_creation_of_length_zero_waits_then_finishes_once(cluster):
    """`Upload-Length: 0` with `Upload-Complete: ?0` and no content on Redis: the upload is at its length but not
    complete (`?0` on every instance, no finish), until an empty `?1` PATCH on another instance completes it; then
    pre-finish and post-finish fire once, for a zero-byte upload."""
    from test_ietf_draft import draft_patch, h1_request
    receiver = HookReceiver().start()
    try:
        a, b, c = cluster(3, "--hooks-http", receiver.url, "--hooks-enabled-events", "pre-finish,post-finish")
        draft = {"Upload-Draft-Interop-Version": "8"}
        status, headers, _ = h1_request(a, "POST", "/files/", {**draft, "Upload-Complete": "?0", "Upload-Length": "0"})
        assert status == 201 and headers["upload-complete"] == "?0", (status, headers)
        upload_id = draft_upload_id(headers)
        path = "/files/" + upload_id
        for server in (a, b, c):
            status, headers, _ = h1_request(server, "HEAD", path, draft)
            assert (status, headers["upload-offset"], headers["upload-complete"]) == (204, "0", "?0")
        time.sleep(0.5)
        assert receiver.for_upload(upload_id) == []
        status, headers, _ = draft_patch(b, path, 8, 0, "?1", b"")
        assert status == 201 and headers["upload-complete"] == "?1", (status, headers)
        status, headers, _ = h1_request(c, "HEAD", path, draft)
        assert (status, headers["upload-complete"]) == (204, "?1")
        receiver.wait_for(lambda: "post-finish" in receiver.for_upload(upload_id))
        time.sleep(0.5)
        assert receiver.for_upload(upload_id) == ["pre-finish", "post-finish"]
        upload = [call for call in receiver.of_type("post-finish")
                  if call["Event"]["Upload"]["ID"] == upload_id][0]["Event"]["Upload"]
        assert (upload["Size"], upload["Offset"]) == (0, 0)
    finally:
        receiver.stop()
