"""tuspy 1.1.0 (the Python reference client) against the real server."""

from __future__ import annotations

import os
import pathlib

import requests
from tusclient import client as tus_client
from tusclient.storage.filestorage import FileStorage

from tus_helpers import TUS_HEADERS, TusServer, sha256

MiB = 1024 * 1024


def random_file(directory: pathlib.Path, size: int, name: str = "payload.bin") -> tuple[pathlib.Path, bytes]:
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return path, data


def stored_bytes(server: TusServer, url: str) -> bytes:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response
    from_disk = server.data_file(url).read_bytes()
    assert from_disk == response.content, "GET serves exactly the data file"
    return response.content


def test_upload_5mib_in_1mib_chunks(server: TusServer, tmp_path: pathlib.Path):
    path, data = random_file(tmp_path, 5 * MiB)
    uploader = tus_client.TusClient(server.endpoint).uploader(
        str(path), chunk_size=MiB, metadata={"filename": "payload.bin", "kind": "random"}, retries=0)
    uploader.upload()
    assert uploader.offset == len(data)
    assert sha256(stored_bytes(server, uploader.url)) == sha256(data)
    head = requests.head(uploader.url, headers=TUS_HEADERS, timeout=10)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Upload-Metadata"] == "filename cGF5bG9hZC5iaW4=,kind cmFuZG9t"


def test_upload_with_checksum(server: TusServer, tmp_path: pathlib.Path):
    path, data = random_file(tmp_path, 3 * MiB + 17)
    uploader = tus_client.TusClient(server.endpoint).uploader(
        str(path), chunk_size=MiB, upload_checksum=True, retries=0)
    assert uploader.checksum_algorithm_name == "sha1"
    uploader.upload()
    assert sha256(stored_bytes(server, uploader.url)) == sha256(data)


def test_resume_with_new_uploader_from_stored_url(server: TusServer, tmp_path: pathlib.Path):
    path, data = random_file(tmp_path, 2 * MiB + 5)
    storage = FileStorage(str(tmp_path / "urls.json"))
    before = len(server.info_files())
    first = tus_client.TusClient(server.endpoint).uploader(
        str(path), chunk_size=256 * 1024, store_url=True, url_storage=storage, retries=0)
    first.upload_chunk()
    first.upload_chunk()
    assert first.offset == 512 * 1024
    assert len(server.info_files()) == before + 1
    # A new process would build a new uploader: it finds the URL in storage and asks the server for the offset.
    second = tus_client.TusClient(server.endpoint).uploader(
        str(path), chunk_size=MiB, store_url=True, url_storage=storage, retries=0)
    assert second.url == first.url
    assert second.offset == 512 * 1024, "resumed from the server's offset"
    second.upload()
    assert len(server.info_files()) == before + 1, "no second upload was created"
    assert stored_bytes(server, second.url) == data
    storage.close()


def test_resume_with_explicit_url_after_stop_at(server: TusServer, tmp_path: pathlib.Path):
    path, data = random_file(tmp_path, MiB + 3)
    before = len(server.info_files())
    first = tus_client.TusClient(server.endpoint).uploader(str(path), chunk_size=100_000, retries=0)
    first.upload(stop_at=300_001)
    assert first.offset == 300_001
    second = tus_client.TusClient(server.endpoint).uploader(str(path), url=first.url, chunk_size=MiB, retries=0)
    assert second.offset == 300_001
    second.upload()
    assert len(server.info_files()) == before + 1
    assert stored_bytes(server, first.url) == data


def test_empty_file_and_empty_metadata_header(server: TusServer, tmp_path: pathlib.Path):
    # tuspy always sends Upload-Metadata, empty when there is none (CR11).
    path, _ = random_file(tmp_path, 0, "empty.bin")
    uploader = tus_client.TusClient(server.endpoint).uploader(str(path), retries=0)
    assert uploader.get_url_creation_headers()["upload-metadata"] == ""
    uploader.upload()
    head = requests.head(uploader.url, headers=TUS_HEADERS, timeout=10)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == "0"
    assert "Upload-Metadata" not in head.headers
    explicit = requests.post(
        server.endpoint, headers={**TUS_HEADERS, "Upload-Length": "3", "Upload-Metadata": ""}, timeout=10)
    assert explicit.status_code == 201
