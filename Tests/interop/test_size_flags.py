"""Size and duration flags all go through TusCore's one parser (ByteCount, Duration(parsing:)): tus-server's
--max-size and --s3-part-size, --min-free-space, --hooks-http-backoff, tus-cli's --chunk-size. The formats each flag
took before still work (plain bytes, K/M/G suffixes, 500ms/2.5s), the others' spellings now work everywhere (8MiB,
64kb), and a bad value stops the program with the parser's message instead of starting with a guess."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from test_concatenation import cli_binary
from tus_helpers import request, server_binary


def max_size(port: int) -> str | None:
    response = request(port, "OPTIONS", "/files/")
    assert response is not None and response.status == 204, response
    return response.header("Tus-Max-Size")


@pytest.mark.parametrize("text, expected", [("1048576", 1048576), ("1K", 1024), ("64k", 65536), ("2MiB", 2 << 20),
                                            ("5M", 5 << 20), ("1GB", 1 << 30)])
def test_max_size_takes_every_size_spelling(server_factory, text, expected):
    server = server_factory("--max-size", text)
    assert max_size(server.port) == str(expected)


@pytest.mark.parametrize("flags, message", [
    (["--max-size", "5X"], "'5X' is not a size"),
    (["--max-size", "1.5M"], "'1.5M' is not a size"),
    (["--s3-part-size", "8Q"], "'8Q' is not a size"),
    (["--hooks-http", "http://127.0.0.1:9/", "--hooks-http-backoff", "1m"], "'1m' is not a duration"),
    (["--hooks-http", "http://127.0.0.1:9/", "--hooks-http-backoff=-1s"], "'-1s' is not a duration"),
])
def test_bad_values_stop_the_server_with_the_parsers_message(tmp_path: pathlib.Path, flags, message):
    result = subprocess.run([server_binary(), "--host", "127.0.0.1", "--port", "0", "--upload-dir", str(tmp_path),
                             *flags], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, result
    assert message in result.stdout + result.stderr, result


def test_hooks_backoff_in_milliseconds_starts(server_factory):
    server = server_factory("--hooks-http", "http://127.0.0.1:9/", "--hooks-http-backoff", "2.5s")
    assert max_size(server.port) is None


def cli(*args: str, cache: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([cli_binary(), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("chunk", ["65536", "64K", "64KiB", "64kb"])
def test_cli_chunk_size_spellings(server_factory, tmp_path: pathlib.Path, chunk):
    server = server_factory()
    source = tmp_path / "data.bin"
    data = os.urandom(200_000)
    source.write_bytes(data)
    result = cli("upload", str(source), server.endpoint, "--chunk-size", chunk, "-q", cache=tmp_path / "cache")
    assert result.returncode == 0, result
    location = result.stdout.strip().splitlines()[-1]
    response = request(server.port, "GET", "/" + location.split("/", 3)[3])
    assert response is not None and response.status == 200 and response.body == data, response


@pytest.mark.parametrize("chunk", ["0", "64X", "-1K"])
def test_cli_refuses_bad_chunk_sizes(server_factory, tmp_path: pathlib.Path, chunk):
    server = server_factory()
    source = tmp_path / "data.bin"
    source.write_bytes(b"x" * 10)
    result = cli("upload", str(source), server.endpoint, f"--chunk-size={chunk}", "-q", cache=tmp_path / "cache")
    assert result.returncode != 0, result
    assert "expected a positive size" in result.stdout + result.stderr, result
