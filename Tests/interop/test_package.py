"""The .deb that scripts/package.sh builds (scripts/test.sh passes its path in TUS_DEB): unpacked into an empty
root (dpkg-deb -x, no debootstrap), its binaries answer --help, its unit is hardened as the README promises, and
the packaged tus-server, started with the flags of the packaged /etc/default/tus-server, keeps what operators rely
on: JSON logs with --log-format json, and downloads typed from the upload's metadata with nosniff.

lintian and `systemd-analyze verify` run in scripts/package.sh itself (either failing fails the build)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shlex
import subprocess

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
