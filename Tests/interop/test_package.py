"""The .deb that scripts/package.sh builds (scripts/test.sh passes its path in TUS_DEB): unpacked into an empty
root (dpkg-deb -x, no debootstrap), its binaries answer --help, its unit is hardened as the README promises, and
the packaged tus-server, started with the flags of the packaged /etc/default/tus-server, keeps what operators rely
on: JSON logs with --log-format json, and downloads typed from the upload's metadata with nosniff. And it makes no
system call the unit's SystemCallFilter= would refuse (traced with strace, since systemd is not running here).

lintian and `systemd-analyze verify` run in scripts/package.sh itself (either failing fails the build)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from tus_helpers import TusServer, create_upload, patch, request

DEB = os.environ.get("TUS_DEB")
pytestmark = pytest.mark.skipif(not DEB, reason="TUS_DEB unset: scripts/test.sh builds the .deb and sets it")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    target = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", DEB, str(target)], check=True, timeout=60)
    return target


def field(deb: str, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", deb, name], check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def unit_settings(root: pathlib.Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (root / "usr/lib/systemd/system/tus-server.service").read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def packaged_args(root: pathlib.Path) -> list[str]:
    """TUS_SERVER_ARGS from the packaged /etc/default/tus-server, as systemd splits it."""
    for line in (root / "etc/default/tus-server").read_text().splitlines():
        if line.startswith("TUS_SERVER_ARGS="):
            return shlex.split(shlex.split(line.partition("=")[2])[0])
    raise AssertionError("/etc/default/tus-server sets no TUS_SERVER_ARGS")


def test_name_and_contents(root: pathlib.Path):
    assert DEB is not None
    version = field(DEB, "Version")
    assert pathlib.Path(DEB).name == f"tus-server_{version}_amd64.deb"
    for name in ("libuv1", "libssl3", "libnghttp2"):
        assert name in field(DEB, "Depends"), "dependencies come from the linked libraries (dpkg-shlibdeps)"
    for path in (
        "usr/bin/tus-server", "usr/bin/tus-cli", "usr/bin/tus-bench", "etc/default/tus-server",
        "usr/lib/systemd/system/tus-server.service", "usr/share/man/man1/tus-server.1.gz",
        "usr/share/man/man1/tus-cli.1.gz", "usr/share/man/man1/tus-bench.1.gz", "usr/share/doc/tus-server/copyright",
    ):
        assert (root / path).exists(), path


@pytest.mark.parametrize("program", ["tus-server", "tus-cli", "tus-bench"])
def test_binaries_answer_help(root: pathlib.Path, program: str):
    result = subprocess.run(
        [str(root / "usr/bin" / program), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result
    assert "USAGE:" in result.stdout, result.stdout
    # The Swift runtime is linked in: nothing of the toolchain is needed where the package is installed.
    libraries = subprocess.run(
        ["ldd", str(root / "usr/bin" / program)], capture_output=True, text=True, timeout=30).stdout
    assert "libswiftCore" not in libraries and "/opt/swift" not in libraries, libraries


def test_unit_is_hardened(root: pathlib.Path):
    unit = unit_settings(root)
    expected = {
        "Type": "notify", "NotifyAccess": "main", "DynamicUser": "yes", "StateDirectory": "tus-server",
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID", "ExecStart": "/usr/bin/tus-server $TUS_SERVER_ARGS",
        "EnvironmentFile": "-/etc/default/tus-server",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}: {unit.get(key)}"
    # Sized for the default --max-connections (10,000: 2 descriptors each, plus 8 per loop and 64).
    assert int(unit["LimitNOFILE"][0]) >= 2 * 10_000 + 8 * 64 + 64
    args = packaged_args(root)
    assert args[args.index("--upload-dir") + 1] == "/var/lib/tus-server", "the upload dir is the state directory"


def test_packaged_server_logs_json_and_types_downloads(root: pathlib.Path, tmp_path: pathlib.Path, monkeypatch):
    args = packaged_args(root)
    for flag, value in (("--host", "127.0.0.1"), ("--port", "0"), ("--upload-dir", str(tmp_path / "uploads"))):
        args[args.index(flag) + 1] = value
    (tmp_path / "uploads").mkdir()
    monkeypatch.setenv("TUS_SERVER_BIN", str(root / "usr/bin/tus-server"))
    server = TusServer(tmp_path / "uploads", *args, "--log-format", "json", log_path=tmp_path / "server.log").start()
    try:
        data = b"%PDF-1.4 not really\n"
        metadata = ",".join(
            f"{key} {base64.b64encode(value.encode()).decode()}"
            for key, value in (("filename", "report 1.pdf"), ("filetype", "application/pdf")))
        path = create_upload(server.port, len(data), metadata)
        response = patch(server.port, path, 0, data)
        assert response is not None and response.status == 204, response
        response = request(server.port, "GET", path)
        assert response is not None and response.status == 200 and response.body == data, response
        assert response.header("Content-Type") == "application/pdf"
        assert response.header("Content-Disposition") == 'inline; filename="report 1.pdf"'
        assert response.header("X-Content-Type-Options") == "nosniff"
        assert server.stop(grace=5) == 0
    finally:
        server.stop(grace=2)
    lines = server.log_text().splitlines()
    assert lines, "the server logs at start"
    records = [json.loads(line) for line in lines]  # every line one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records), records
    assert any(record["message"] == "serving" for record in records), records


def syscall_groups() -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter`: every @group and its members (names and nested @groups)."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], check=True, capture_output=True, text=True, timeout=30).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def expand(entries: list[str], groups: dict[str, list[str]]) -> set[str]:
    names: set[str] = set()
    for entry in entries:
        names |= expand(groups[entry], groups) if entry.startswith("@") else {entry}
    return names


@pytest.mark.time_limit(120)
def test_packaged_server_stays_inside_the_units_syscall_filter(root: pathlib.Path, tmp_path: pathlib.Path, monkeypatch):
    """Under SystemCallFilter= a system call outside the list fails with EPERM, in production only: systemd is not
    PID 1 here, so the filter (and MemoryDenyWriteExecute=) is checked by tracing what the packaged server calls while
    it starts, takes a spliced 1 MiB+ upload, a checksummed one, serves a download and a deletion, and stops."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed (scripts/bootstrap.sh installs it)")
    filters = unit_settings(root)["SystemCallFilter"]
    allowed = expand([entry for value in filters for entry in value.split() if not entry.startswith("~")],
                     syscall_groups())
    denied = expand([entry.lstrip("~") for value in filters for entry in value.split() if entry.startswith("~")],
                    syscall_groups())
    trace = tmp_path / "trace"
    (tmp_path / "uploads").mkdir()
    monkeypatch.setenv("TUS_SERVER_BIN", str(root / "usr/bin/tus-server"))
    server = TusServer(
        tmp_path / "uploads", "--loops", "2", log_path=tmp_path / "server.log",
        launcher=("strace", "-f", "-qq", "-o", str(trace))).start()
    try:
        data = os.urandom(3 << 20)
        path = create_upload(server.port, len(data))
        response = patch(server.port, path, 0, data)
        assert response is not None and response.status == 204, response
        checked = create_upload(server.port, 4)
        digest = base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
        response = patch(server.port, checked, 0, b"abcd", {"Upload-Checksum": f"sha1 {digest}"})
        assert response is not None and response.status == 204, response
        response = request(server.port, "GET", path)
        assert response is not None and response.status == 200 and response.body == data, response
        response = request(server.port, "DELETE", path)
        assert response is not None and response.status == 204, response
        # The launcher is strace: stop the server it runs, and strace ends with it.
        child = int((pathlib.Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split() or ["0"])[0])
        assert child > 0, "the server runs under strace"
        os.kill(child, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while server.process is not None and server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop(grace=5)
    called = {match.group(1) for match in re.finditer(r"^\d+ +([a-z_0-9]+)\(", trace.read_text(), re.MULTILINE)}
    assert "splice" in called, "the upload took the splice path"
    outside = sorted(name for name in called if name not in allowed or name in denied)
    assert not outside, f"system calls the unit's SystemCallFilter={filters} refuses: {outside}"
    # MemoryDenyWriteExecute=yes refuses mappings both writable and executable, and making memory executable later.
    assert unit_settings(root)["MemoryDenyWriteExecute"] == ["yes"]
    refused = re.findall(
        r"^\d+ +(?:mmap\(.*PROT_WRITE\|PROT_EXEC|(?:pkey_)?mprotect\(.*PROT_EXEC).*$", trace.read_text(), re.MULTILINE)
    assert not refused, refused[:5]
