"""HTTP/2 abuse (issue 21 §1) against the real tus-server over TLS with ALPN h2: HPACK bombs, floods of frames that
carry no progress, a client that never sends its preface, rapid reset, and streams beyond the advertised maximum.
Each attack runs while another client sends HEADs on its own connection (same event loop: `--loops 1`), whose
latency must stay bounded; the server's CPU per abusive connection is printed (bench/results/2026-12-07-h2-abuse
has the numbers beside nginx). Attack frames are written with hyperframe/hpack (tests/interop/h2_helpers.py);
servers are stopped by PID; every wait is bounded."""

from __future__ import annotations

import re
import socket
import time

import hpack
import hyperframe.frame
import h2.settings
import pytest

from h2_helpers import (ENHANCE_YOUR_CALM, REFUSED_STREAM, SETTINGS_TIMEOUT, H2Client, LatencyProbe, RawH2,
                        connect, cpu_seconds, flood_connection, flood_frames, hpack_bomb_connection,
                        rapid_reset_connection, request_block, tus_patch_fields)
from test_tls import Server, pki  # noqa: F401  (pki is a fixture)

TUS = {"tus-resumable": "1.0.0"}
ATTACK_SECONDS = 3.0
# Other clients' HEAD p99 while an attack runs. The issue measured 3.7 s (HPACK bomb) and 140 ms (empty DATA
# flood, from 0.9 ms); on a shared 2-core box with other builds running, 300 ms (or 4x the p99 measured just before
# the attack, when the box itself is that slow) still separates "bounded" from that.
P99_BOUND = 0.3


def p99_bound(baseline: float) -> float:
    return max(P99_BOUND, 4 * baseline)


@pytest.fixture
def server(pki):
    directory, (pem, key), _ = pki
    # Abusive connections are logged at info, at most one line per kind a second (see
    # test_a_stream_of_hostile_connections_cannot_block_the_server_on_its_log); warning keeps the output quiet.
    server = Server("--tls-certificate", str(pem), "--tls-key", str(key), "--body-timeout", "5",
                    "--log-level", "warning")
    yield server
    server.stop()


def ca(pki) -> str:
    return str(pki[0] / "ca.pem")


def create_upload(port: int, cafile: str, length: int = 1 << 20) -> str:
    with H2Client(port, cafile) as client:
        stream = client.get(client.request("POST", "/files/", {**TUS, "upload-length": str(length)}))
        assert stream.status == 201, stream
        return "/" + stream.headers["location"].split("/", 3)[3]


def baseline_p99(port: int, cafile: str, path: str) -> float:
    with LatencyProbe(port, cafile, path) as probe:
        time.sleep(1.0)
    return probe.p99


def report(name: str, probe: LatencyProbe, baseline: float, cpu: float, connections: int, unit: str,
           units: int) -> None:
    print(f"\n[{name}] connections={connections} {unit}={units} server_cpu={cpu:.3f}s "
          f"cpu_per_connection={1000 * cpu / max(1, connections):.2f}ms "
          f"cpu_per_{unit}={1000 * cpu / max(1, units):.3f}ms probe_requests={len(probe.latencies)} "
          f"probe_p99={1000 * probe.p99:.1f}ms baseline_p99={1000 * baseline:.1f}ms timeouts={probe.timeouts}")


@pytest.mark.time_limit(60)
def test_hpack_bomb_is_not_decoded_past_the_limit_and_a_repeating_client_is_cut_off(server, pki):
    path = create_upload(server.port, ca(pki))
    # An honest oversized head is still answered 431, and the connection lives on.
    with H2Client(server.port, ca(pki)) as client:
        assert client.get(client.request("HEAD", path, {**TUS, "x-big": "a" * (20 * 1024)})).status == 431
        assert client.get(client.request("HEAD", path, TUS)).status == 200
        # 100 header fields (the pseudo-header fields not counted, as HTTP/1.1 does not count its request line).
        hundred = {**TUS, **{f"x-{index}": "v" for index in range(99)}}
        assert client.get(client.request("HEAD", path, hundred)).status == 200
        assert client.get(client.request("HEAD", path, {**hundred, "x-one-more": "v"})).status == 431
    # One connection: the first three bombs are each reset without being decoded further; the fourth ends the
    # connection with ENHANCE_YOUR_CALM.
    client, sent = hpack_bomb_connection(server.port, ca(pki), path, blocks=6)
    with client:
        client.wait(lambda: client.goaway is not None, timeout=5)
        assert sent == 4, (sent, client.resets, client.goaway)
        assert sorted(client.resets) == [1, 3, 5]
        assert client.goaway == ENHANCE_YOUR_CALM
        client.wait_closed(timeout=5)
    # Sustained: a client reconnecting and bombing for ATTACK_SECONDS while another client sends HEADs.
    baseline = baseline_p99(server.port, ca(pki), path)
    connections = blocks = 0
    with LatencyProbe(server.port, ca(pki), path) as probe:
        cpu_before = cpu_seconds(server.process.pid)
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            client, sent = hpack_bomb_connection(server.port, ca(pki), path, blocks=4)
            client.close()
            connections += 1
            blocks += sent
            assert client.goaway == ENHANCE_YOUR_CALM
        cpu = cpu_seconds(server.process.pid) - cpu_before
    report("hpack-bomb", probe, baseline, cpu, connections, "block", blocks)
    assert probe.timeouts == 0 and not probe.errors, (probe.timeouts, probe.errors[:3])
    assert probe.p99 < p99_bound(baseline), (probe.p99, baseline)
    # Each block used to cost ~12 ms of loop time (all 10,000 fields validated and counted).
    assert cpu / blocks < 0.004, cpu / blocks


FLOODS = ["empty-data", "priority", "window-update", "ping", "settings", "rst-stream", "empty-headers"]


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("kind", FLOODS)
def test_flood_of_frames_without_progress_closes_the_connection(server, pki, kind):
    path = create_upload(server.port, ca(pki), length=1000)
    started = time.monotonic()
    client, sent = flood_connection(server.port, ca(pki), tus_patch_fields(path), kind, seconds=10)
    with client:
        assert client.goaway == ENHANCE_YOUR_CALM, (client.goaway, sent)
        assert time.monotonic() - started < 5, "the flood was detected, not timed out"
        client.wait_closed(timeout=5)
    baseline = baseline_p99(server.port, ca(pki), path)
    connections = frames = 0
    with LatencyProbe(server.port, ca(pki), path) as probe:
        cpu_before = cpu_seconds(server.process.pid)
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            client, sent = flood_connection(server.port, ca(pki), tus_patch_fields(path), kind, seconds=5)
            client.close()
            connections += 1
            frames += sent
            assert client.goaway == ENHANCE_YOUR_CALM, (connections, sent, client.closed, client.send_failed,
                                                        client.statuses, client.resets)
        cpu = cpu_seconds(server.process.pid) - cpu_before
    report(f"flood-{kind}", probe, baseline, cpu, connections, "frame_sent", frames)
    assert probe.timeouts == 0 and not probe.errors, (probe.timeouts, probe.errors[:3])
    assert probe.p99 < p99_bound(baseline), (probe.p99, baseline)
    # The upload whose stream carried the flood is intact and unlocked.
    with H2Client(server.port, ca(pki)) as check:
        assert check.get(check.request("HEAD", path, TUS)).headers["upload-offset"] == "0"


def test_empty_continuation_flood_closes_the_connection(server, pki):
    """nghttp2's CONTINUATION limit (8 per block) acts before the flood budget: the connection is closed."""
    with RawH2(server.port, ca(pki)) as client:
        client.send(flood_frames("empty-continuation", 1, 2000, first_new_stream=1))
        client.wait_closed(timeout=5)


def test_an_honest_download_and_many_requests_stay_under_the_flood_budget(server, pki):
    """WINDOW_UPDATEs that answer our DATA frames, and a few hundred requests with PINGs between them, are
    progress: the connection lives."""
    path = create_upload(server.port, ca(pki), length=8 << 20)
    with H2Client(server.port, ca(pki)) as client:
        body = bytes(range(256)) * (8 << 12)
        upload = client.request("PATCH", path, {**TUS, "upload-offset": "0",
                                                "content-type": "application/offset+octet-stream"}, body=body)
        assert client.get(upload, timeout=60).status == 204
        for _ in range(3):
            download = client.get(client.request("GET", path), timeout=60)
            assert download.status == 200 and len(download.data) == len(body)
        for index in range(300):
            if index % 3 == 0:
                client.conn.ping(b"12345678")
            assert client.get(client.request("HEAD", path, TUS)).status == 200
        assert client.terminated is None


def test_preface_and_settings_wait_follows_the_head_timeout(pki):
    directory, (pem, key), _ = pki
    server = Server("--tls-certificate", str(pem), "--tls-key", str(key), "--head-timeout", "1")
    try:
        # ALPN h2, then silence: GOAWAY SETTINGS_TIMEOUT after about a second (it was a fixed 10 s).
        sock = connect(server.port, ca(pki))
        started = time.monotonic()
        data = b""
        sock.settimeout(5)
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except OSError:
            pass
        elapsed = time.monotonic() - started
        sock.close()
        assert 0.8 <= elapsed <= 3, elapsed
        goaways = [frame for frame in parse_frames(data) if isinstance(frame, hyperframe.frame.GoAwayFrame)]
        assert goaways and goaways[-1].error_code == SETTINGS_TIMEOUT
        # A preface and SETTINGS, but our SETTINGS never acknowledged: the same.
        raw = RawH2(server.port, ca(pki))
        raw._record = lambda frame, record=raw._record: None if isinstance(
            frame, hyperframe.frame.SettingsFrame) else record(frame)
        with raw:
            assert 0.5 <= raw.wait_closed(timeout=5) <= 3
            assert raw.goaway == SETTINGS_TIMEOUT
        # A client that acknowledges in time keeps its connection past the head timeout.
        with H2Client(server.port, ca(pki)) as client:
            client.wait(lambda: client.remote_settings_seen, what="server SETTINGS")  # and acknowledges them
            time.sleep(1.5)
            assert client.get(client.request("OPTIONS", "/files/")).status == 204
    finally:
        server.stop()


def parse_frames(data: bytes) -> list:
    frames = []
    while len(data) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9:9 + length]))
        frames.append(frame)
        data = data[9 + length:]
    return frames


@pytest.mark.time_limit(60)
def test_rapid_reset_is_answered_enhance_your_calm(server, pki):
    path = create_upload(server.port, ca(pki))
    with H2Client(server.port, ca(pki)) as client:
        for _ in range(50):
            stream_id = client.request("HEAD", path, TUS, end_stream=False)
            client.conn.reset_stream(stream_id)
            client.flush()
        assert client.get(client.request("OPTIONS", "/files/")).status == 204
        assert client.terminated is None
    connections = resets = 0
    baseline = baseline_p99(server.port, ca(pki), path)
    with LatencyProbe(server.port, ca(pki), path) as probe:
        cpu_before = cpu_seconds(server.process.pid)
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            with rapid_reset_connection(server.port, ca(pki), path, streams=400) as raw:
                assert raw.goaway == ENHANCE_YOUR_CALM
                connections += 1
                resets += 400
        cpu = cpu_seconds(server.process.pid) - cpu_before
    report("rapid-reset", probe, baseline, cpu, connections, "reset", resets)
    assert probe.timeouts == 0 and not probe.errors, (probe.timeouts, probe.errors[:3])
    assert probe.p99 < p99_bound(baseline), (probe.p99, baseline)


@pytest.mark.time_limit(90)
def test_streams_beyond_the_maximum_are_refused_and_the_others_finish(server, pki):
    paths = [create_upload(server.port, ca(pki), length=100) for _ in range(100)]
    with H2Client(server.port, ca(pki)) as client:
        client.wait(lambda: client.remote_settings_seen, what="server SETTINGS")
        assert client.conn.remote_settings.max_concurrent_streams == 100
        patch = {**TUS, "upload-offset": "0", "content-type": "application/offset+octet-stream",
                 "content-length": "100"}
        streams = [client.request("PATCH", path, patch, end_stream=False) for path in paths]
        # Let the server take all 100 (and acknowledge our SETTINGS) before going over.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            client.pump(0.05)
        # h2 would not send beyond the peer's limit; a client that does (or that raced a lowered limit):
        client.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].appendleft(1000)
        extra = [client.request("HEAD", paths[0], TUS) for _ in range(3)]
        for stream_id in extra:
            client.wait(lambda: client.done(stream_id), what=f"refusal of stream {stream_id}")
            assert client.streams[stream_id].reset == REFUSED_STREAM
        assert client.terminated is None
        # The 100 in flight finish.
        for stream_id in streams:
            client.send_body(stream_id, b"x" * 100)
        for stream_id in streams:
            assert client.get(stream_id).status == 204
        # And the connection takes new streams again.
        assert client.get(client.request("HEAD", paths[0], TUS)).headers["upload-offset"] == "100"


@pytest.mark.time_limit(90)
def test_a_stream_of_hostile_connections_cannot_block_the_server_on_its_log():
    """Each connection cut off for abuse is a line at info. A log pipe nobody drains (here: stderr, which the
    harness reads only at the end) filled after ~490 of them and stopped the loop; now one line per kind per second
    goes out, plus the count of those left out. 1500 h2c connections each flood PINGs past the budget (GOAWAY
    ENHANCE_YOUR_CALM), at the default log level: every one is still cut off at once, and the log stays short."""
    server = Server("--h2c")
    connections = 1500
    settings = hyperframe.frame.SettingsFrame(0).serialize()
    pings = b"".join(hyperframe.frame.PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(1001))
    attack = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + pings
    started = time.monotonic()
    try:
        for index in range(connections):
            with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
                sock.sendall(attack)
                received = b""
                try:
                    while piece := sock.recv(65536):
                        received += piece
                except OSError:
                    pass
            goaways = [frame for frame in parse_frames(received) if isinstance(frame, hyperframe.frame.GoAwayFrame)]
            assert goaways and goaways[-1].error_code == ENHANCE_YOUR_CALM, f"connection {index} was not cut off"
        elapsed = time.monotonic() - started
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
            sock.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 204"), "the server still answers"
        time.sleep(1.7)  # the sweep (every 0.5 s) writes the count of a flood that stopped, 1 s after its line
    finally:
        server.stop()
    lines = [line for line in server.process.stderr.read().splitlines() if "closing connection" in line
             or "left out" in line]
    print(f"\n[log flood] connections={connections} seconds={elapsed:.2f} lines={len(lines)}")
    assert len(lines) <= 2 * (elapsed + 3), lines[:20]
    left_out = sum(int(match) for line in lines for match in re.findall(r"(\d+) more HTTP/2 limit", line))
    assert left_out + sum("ENHANCE_YOUR_CALM" in line for line in lines) == connections, lines
