"""Fixtures for the interop suite: the real tus-server binary, started per session or per test.

Every test is bounded in time by SIGALRM (no plugin needed): the default bound is DEFAULT_TEST_SECONDS, a test
may ask for another with @pytest.mark.time_limit(seconds). Servers are stopped by PID in teardown, whatever
the test did.
"""

from __future__ import annotations

import pathlib
import signal

import pytest

from s3_helpers import CephRGW
from tus_helpers import TusServer

DEFAULT_TEST_SECONDS = 60


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "time_limit(seconds): wall-clock bound for one test (SIGALRM)")


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest):
    marker = request.node.get_closest_marker("time_limit")
    seconds = int(marker.args[0]) if marker else DEFAULT_TEST_SECONDS

    def expired(signum, frame):
        raise TimeLimitExceeded(f"{request.node.nodeid} exceeded {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One file-store server shared by the tests that need nothing special."""
    upload_dir = tmp_path_factory.mktemp("uploads")
    instance = TusServer(upload_dir).start()
    yield instance
    code = instance.stop()
    assert code == 0, f"graceful shutdown exits 0, got {code}; log:\n{instance.log_text()[-3000:]}"


@pytest.fixture
def server_factory(tmp_path: pathlib.Path):
    """Starts servers with their own arguments (restart tests reuse one directory); stops them all after."""
    started: list[TusServer] = []

    def make(*args: str, upload_dir: pathlib.Path | None = None) -> TusServer:
        directory = upload_dir or (tmp_path / "uploads")
        directory.mkdir(exist_ok=True)
        instance = TusServer(directory, *args, log_path=tmp_path / f"server-{len(started)}.log").start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.stop(grace=5)


@pytest.fixture(scope="session")
def rgw(tmp_path_factory):
    """One Ceph RGW per session, started by the first test that needs it (test_s3.py, the s3 cases of
    test_concatenation.py) and stopped by PID at the end: its memstore OSD holds everything in RAM."""
    gateway = CephRGW(tmp_path_factory.mktemp("ceph")).start()
    yield gateway
    gateway.stop()
