"""Upload-Checksum against the real binary with large Content-Length bodies (issue 19): with `--splice on` (the
default) they are spliced into the file and hashed by reading the file back; `--splice off` reads them into memory.
Both must store exactly the verified bytes, answer a mismatch with 460 and cut the file back to the old offset."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from tus_helpers import create_upload, head_offset, patch

MiB = 1 << 20


def digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("splice", ["on", "off"])
@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_large_checksummed_patches_store_only_verified_bytes(server_factory, splice: str, algorithm: str):
    server = server_factory("--splice", splice)
    data = os.urandom(12 * MiB + 7)
    split = 3 * MiB + 1
    path = create_upload(server.port, len(data))
    first, rest = data[:split], data[split:]

    response = patch(server.port, path, 0, first, {"Upload-Checksum": digest(algorithm, first)})
    assert response is not None and response.status == 204
    wrong = rest[:-1] + bytes([rest[-1] ^ 1])
    response = patch(server.port, path, split, rest, {"Upload-Checksum": digest(algorithm, wrong)})
    assert response is not None and response.status == 460
    assert head_offset(server.port, path) == split, "the mismatched PATCH moved nothing"
    assert server.data_file(path).stat().st_size == split, "its bytes were cut off the file"

    response = patch(server.port, path, split, rest, {"Upload-Checksum": digest(algorithm, rest)})
    assert response is not None and response.status == 204
    assert response.header("Upload-Offset") == str(len(data))
    assert server.data_file(path).read_bytes() == data
