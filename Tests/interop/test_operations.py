"""Operations endpoints against the real binary: request ids in responses and logs, /healthz, /readyz (with a
paused Redis), and /metrics read by the Prometheus Python parser and by `promtool check metrics`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster_helpers import RedisServer
from tus_helpers import RawConnection, TusServer, create_upload, patch, request, wait_until

KiB = 1024

# tusd's own counters without the `_total` suffix; promtool's lint names them, and we keep tusd's names so
# that existing dashboards work. Any other finding fails the test.
TUSD_LEGACY_COUNTERS = {"tusd_bytes_received", "tusd_uploads_created", "tusd_uploads_finished", "tusd_uploads_terminated"}


def scrape(server: TusServer) -> tuple[str, dict[str, list]]:
    response = request(server.port, "GET", "/metrics")
    assert response is not None and response.status == 200, response
    assert response.header("Content-Type").startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    families = {family.name: family.samples for family in text_string_to_metric_families(text)}
    return text, families


def value(families: dict[str, list], family: str, sample: str | None = None, **labels: str) -> float:
    for candidate in families[family]:
        if (sample is None or candidate.name == sample) and all(candidate.labels.get(k) == v for k, v in labels.items()):
            return candidate.value
    raise AssertionError(f"no sample {family} {sample} {labels}")


def test_request_id_is_echoed_generated_and_logged(server_factory):
    server = server_factory("--log-level", "debug")
    given = request(server.port, "HEAD", "/files/nope", {"X-Request-ID": "trace-abc.123"})
    assert given.status == 404 and given.header("X-Request-ID") == "trace-abc.123"
    made = request(server.port, "HEAD", "/files/nope", {"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.header("X-Request-ID") or ""), made
    assert request(server.port, "OPTIONS", "/files/").header("X-Request-ID")
    log = server.log_text()
    assert re.search(r"HEAD /files/nope -> 404 request_id=trace-abc\.123", log), log[-2000:]
    assert "bad id with spaces" not in log


def test_health_and_readiness_on_the_file_store(server_factory):
    server = server_factory()
    assert request(server.port, "GET", "/healthz").status == 200
    ready = request(server.port, "GET", "/readyz")
    assert ready.status == 200, ready
    os.chmod(server.upload_dir, 0o500)
    try:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories; the Redis case below covers not-ready")
        assert request(server.port, "GET", "/readyz").status == 503
    finally:
        os.chmod(server.upload_dir, 0o700)


@pytest.mark.time_limit(60)
def test_readiness_fails_while_redis_is_paused(server_factory, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        server = server_factory("--redis", redis.url, "--redis-prefix", "readyz:")
        assert request(server.port, "GET", "/readyz").status == 200
        redis.pause()
        try:
            during = request(server.port, "GET", "/readyz")
            assert during.status == 503, during
            assert b"state:" in during.body
            assert request(server.port, "GET", "/healthz").status == 200, "alive while not ready"
        finally:
            redis.resume()
        for _ in range(100):
            if request(server.port, "GET", "/readyz").status == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("ready again once Redis answers")
    finally:
        redis.stop()


def test_metrics_parse_and_move_after_an_upload(server_factory):
    server = server_factory("--loops", "2")
    _, before = scrape(server)
    data = os.urandom(300 * KiB)
    path = create_upload(server.port, len(data))
    assert patch(server.port, path, 0, data[:100 * KiB]).status == 204
    assert patch(server.port, path, 100 * KiB, data[100 * KiB:]).status == 204
    assert request(server.port, "HEAD", "/files/missing").status == 404
    assert request(server.port, "DELETE", path).status == 204
    text, after = scrape(server)

    def moved(family: str, sample: str | None = None, **labels: str) -> float:
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    assert moved("tusd_requests", "tusd_requests_total", method="PATCH") == 2
    assert moved("tusd_requests", "tusd_requests_total", method="POST") == 1
    assert moved("tusd_bytes_received") == len(data)
    assert moved("tusd_uploads_created") == 1
    assert moved("tusd_uploads_finished") == 1
    assert moved("tusd_uploads_terminated") == 1
    assert value(after, "tusd_errors", "tusd_errors_total", status="404", code="ERR_UPLOAD_NOT_FOUND") >= 1
    assert value(after, "tusd_connections_open") >= 1, "the scrape's own connection is open"
    assert moved("tus_request_duration_seconds", "tus_request_duration_seconds_count", method="PATCH") == 2
    assert value(after, "tus_lock_wait_seconds", "tus_lock_wait_seconds_count") >= 3
    assert value(after, "tusd_hook_invocations", "tusd_hook_invocations_total", hooktype="post-finish") == 0

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt prometheus; scripts/bootstrap.sh installs it)")
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    findings = [line for line in (checked.stdout + checked.stderr).decode().splitlines() if line.strip()]
    unexpected = [
        line for line in findings
        if not any(line.startswith(f"{name} counter metrics should have \"_total\" suffix") for name in TUSD_LEGACY_COUNTERS)
    ]
    assert not unexpected, findings
    assert checked.returncode in (0, 3), findings  # 3 = lint findings only (the legacy names above)


def test_no_metrics_flag(server_factory):
    server = server_factory("--no-metrics")
    assert request(server.port, "GET", "/metrics").status == 404


def test_connection_log_lines_carry_the_request_id(server_factory):
    server = server_factory("--body-timeout", "1")
    path = create_upload(server.port, 10)
    with RawConnection(server.port) as connection:
        head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: 10\r\n"
                "X-Request-ID: stalled-patch-7\r\n\r\nx")
        connection.send(head.encode())
        # Either the body timeout or the minimum body rate ends it; both lines name the request.
        wait_until(lambda: "closing connection request_id=stalled-patch-7" in server.log_text(), 10,
                   message="the timeout line names the request")
