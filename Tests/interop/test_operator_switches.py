"""--disable-download and --disable-termination (as tusd's) against the real binary: the extension leaves
Tus-Extension, the method answers 405 as over a store without it, and everything else keeps working. The same
requests against a server without the switches show what the switches take away."""

from __future__ import annotations

import os

from tus_helpers import create_upload, head_offset, patch, request


def extensions(port: int) -> list[str]:
    response = request(port, "OPTIONS", "/files/")
    assert response is not None and response.status == 204, response
    return (response.header("Tus-Extension") or "").split(",")


def uploaded(port: int, data: bytes) -> str:
    path = create_upload(port, len(data))
    response = patch(port, path, 0, data)
    assert response is not None and response.status == 204, response
    return path


def test_defaults_offer_download_and_termination(server_factory):
    server = server_factory()
    data = os.urandom(1000)
    path = uploaded(server.port, data)
    assert "termination" in extensions(server.port)
    response = request(server.port, "GET", path)
    assert response is not None and response.status == 200 and response.body == data, response
    response = request(server.port, "DELETE", path)
    assert response is not None and response.status == 204, response


def test_disable_download(server_factory):
    server = server_factory("--disable-download")
    data = os.urandom(1000)
    path = uploaded(server.port, data)
    response = request(server.port, "GET", path)
    assert response is not None and response.status == 405, response
    assert response.header("Allow") == "HEAD, PATCH, DELETE, OPTIONS"
    assert data not in response.body
    assert head_offset(server.port, path) == len(data)
    assert "termination" in extensions(server.port)
    response = request(server.port, "DELETE", path)
    assert response is not None and response.status == 204, response


def test_disable_termination(server_factory):
    server = server_factory("--disable-termination")
    data = os.urandom(1000)
    path = uploaded(server.port, data)
    offered = extensions(server.port)
    assert "termination" not in offered and "creation" in offered and "checksum" in offered, offered
    response = request(server.port, "DELETE", path)
    assert response is not None and response.status == 405, response
    assert response.header("Allow") == "HEAD, PATCH, GET, OPTIONS"
    response = request(server.port, "POST", path, {"X-HTTP-Method-Override": "DELETE"})
    assert response is not None and response.status == 405, response
    assert head_offset(server.port, path) == len(data), "the upload is still there"
    response = request(server.port, "GET", path)
    assert response is not None and response.status == 200 and response.body == data, response
