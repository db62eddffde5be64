"""aiotus 1.1.0 (asyncio client; insists on POST -> exactly 201) against the real server."""

from __future__ import annotations

import asyncio
import io
import os

import aiohttp
import aiotus
import pytest
import yarl
from aiotus import core, creation

from tus_helpers import TusServer, request

MiB = 1024 * 1024
QUIET = aiotus.RetryConfiguration(retry_attempts=1, max_retry_period_seconds=0.1)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=45))


def test_upload_in_chunks_with_metadata(server: TusServer):
    data = os.urandom(3 * MiB + 123)
    metadata = {"filename": "report.pdf".encode(), "is_confidential": None, "unicode": "größe".encode()}

    async def scenario():
        location = await aiotus.upload(server.endpoint, io.BytesIO(data), metadata, config=QUIET, chunksize=MiB)
        assert location is not None, "aiotus.upload failed (it logs why)"
        echoed = await aiotus.metadata(location, config=QUIET)
        return location, echoed

    location, echoed = run(scenario())
    assert location.is_absolute()
    assert echoed == metadata
    assert server.data_file(str(location)).read_bytes() == data


def test_configuration_is_readable(server: TusServer):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            return await core.configuration(session, yarl.URL(server.endpoint))

    config = run(scenario())
    assert config.protocol_versions == ["1.0.0"]
    for extension in ("creation", "creation-with-upload", "creation-defer-length", "termination", "checksum", "expiration"):
        assert extension in config.protocol_extensions


class FailingAfter(io.BytesIO):
    """A file whose reads start failing after `limit` bytes: the client dies mid-upload."""

    def __init__(self, data: bytes, limit: int):
        super().__init__(data)
        self.limit = limit

    def read(self, size: int = -1) -> bytes:
        if self.tell() >= self.limit:
            raise OSError("simulated client crash")
        return super().read(size)


def test_resume_from_stored_url_after_interruption(server: TusServer):
    data = os.urandom(2 * MiB + 99)
    before = len(server.info_files())

    async def scenario():
        endpoint = yarl.URL(server.endpoint)
        async with aiohttp.ClientSession() as session:
            location = await creation.create(session, endpoint, io.BytesIO(data), {"name": b"x"})
            with pytest.raises(OSError):
                await core.upload_buffer(session, location, FailingAfter(data, 3 * 256 * 1024), chunksize=256 * 1024)
        # A new session (a new process) resumes from the stored URL: HEAD, then PATCH from the server's offset.
        async with aiohttp.ClientSession() as session:
            assert await core.offset(session, location) == 3 * 256 * 1024
            await core.upload_buffer(session, location, io.BytesIO(data), chunksize=MiB)
            assert await core.offset(session, location) == len(data)
        return location

    location = run(scenario())
    assert len(server.info_files()) == before + 1, "resumed, not re-created"
    assert server.data_file(str(location)).read_bytes() == data


def test_relative_location_server(server_factory):
    relative = server_factory("--relative-location", "--store", "memory")
    data = os.urandom(MiB + 1)

    async def scenario():
        endpoint = yarl.URL(relative.endpoint)
        async with aiohttp.ClientSession() as session:
            location = await creation.create(session, endpoint, io.BytesIO(data), {"name": b"rel"})
            assert not location.is_absolute() and location.path.startswith("/files/")
            absolute = endpoint.join(location)
            await core.upload_buffer(session, absolute, io.BytesIO(data), chunksize=256 * 1024)
            assert await core.metadata(session, absolute) == {"name": b"rel"}
            return location.path

    path = run(scenario())
    response = request(relative.port, "GET", path)
    assert response is not None and response.status == 200 and response.body == data


@pytest.mark.xfail(strict=True, reason=(
    "CLIENT LIMITATION, not a server bug: aiotus 1.1.0 joins a relative Location with `endpoint / location.path`, "
    "and yarl rejects appending a path that starts with '/', so aiotus.upload() fails against any server that "
    "sends Location: /files/<id> (the low-level API works: test_relative_location_server)"))
def test_aiotus_high_level_upload_with_relative_location(server_factory):
    relative = server_factory("--relative-location", "--store", "memory")
    location = run(aiotus.upload(relative.endpoint, io.BytesIO(b"hello"), config=QUIET))
    assert location is not None


def test_relative_location_is_a_flag(server_factory):
    relative = server_factory("--relative-location")
    response = request(relative.port, "POST", "/files/", {"Upload-Length": "1"})
    assert response is not None and response.status == 201
    assert (response.header("Location") or "").startswith("/files/")
