"""--auth-jwt-key against the real binary: every case of the brief (missing, expired, wrong signature, wrong
algorithm including `alg: none`, another user's upload, max_size), with HS256, RS256 and ES256 keys, plus the
owner surviving a restart and preflights staying open."""

from __future__ import annotations

import time

import pytest

from jwt_helpers import make_keys, make_token
from tus_helpers import create_upload, patch, request

HOUR = 3600


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(port: int, token: str | None, length: int = 10):
    headers = {"Upload-Length": str(length), "Content-Length": "0", **(bearer(token) if token else {})}
    return request(port, "POST", "/files/", headers)


@pytest.mark.parametrize("alg,private,public", [("HS256", "secret", "secret"), ("RS256", "rsa.pem", "rsa.pub"), ("ES256", "ec.pem", "ec.pub")])
def test_tokens_of_each_algorithm(server_factory, keys, alg, private, public):
    server = server_factory("--store", "memory", "--auth-jwt-key", str(keys[public]))
    key = keys[private].read_bytes().rstrip(b"\n") if alg == "HS256" else keys[private]
    good = make_token({"sub": "alice", "exp": int(time.time()) + HOUR}, alg, key)
    created = post(server.port, good)
    assert created.status == 201, created
    assert created.header("X-Request-ID")

    missing = post(server.port, None)
    assert missing.status == 401 and missing.header("WWW-Authenticate") == 'Bearer realm="tus"'
    expired = post(server.port, make_token({"sub": "alice", "exp": int(time.time()) - HOUR}, alg, key))
    assert expired.status == 401 and 'error="invalid_token"' in expired.header("WWW-Authenticate")
    unsigned = post(server.port, make_token({"sub": "alice"}, "none"))
    assert unsigned.status == 401
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    assert post(server.port, tampered).status == 401
    if alg != "HS256":
        # The public key used as an HMAC secret: the classic algorithm confusion.
        confused = make_token({"sub": "mallory"}, "HS256", keys[public].read_bytes())
        assert post(server.port, confused).status == 401
    else:
        other = make_token({"sub": "alice"}, "RS256", keys["rsa.pem"])
        assert post(server.port, other).status == 401
    preflight = request(server.port, "OPTIONS", "/files/", {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204, "preflights carry no credentials"
    assert request(server.port, "GET", "/healthz").status == 200, "probes carry no credentials"


def test_only_the_owner_sees_an_upload_and_max_size_caps(server_factory, keys, tmp_path):
    secret = keys["secret"].read_bytes().rstrip(b"\n")
    server = server_factory("--auth-jwt-key", str(keys["secret"]))
    alice = make_token({"sub": "alice", "exp": int(time.time()) + HOUR}, "HS256", secret)
    bob = make_token({"sub": "bob", "exp": int(time.time()) + HOUR, "max_size": 100}, "HS256", secret)
    created = post(server.port, alice, 20)
    path = created.header("Location").split("://", 1)[1].split("/", 1)[1]
    path = "/" + path
    assert request(server.port, "HEAD", path, bearer(alice)).status == 200
    for method in ("HEAD", "GET", "DELETE"):
        assert request(server.port, method, path, bearer(bob)).status == 404, method
    assert patch(server.port, path, 0, b"x" * 20, bearer(bob)).status == 404
    assert patch(server.port, path, 0, b"x" * 20, bearer(alice)).status == 204
    assert post(server.port, bob, 101).status == 413
    assert post(server.port, bob, 100).status == 201

    # The owner is in the upload's record: a restart keeps it.
    assert server.stop() == 0
    restarted = server_factory("--auth-jwt-key", str(keys["secret"]), upload_dir=server.upload_dir)
    assert request(restarted.port, "HEAD", path, bearer(bob)).status == 404
    assert request(restarted.port, "HEAD", path, bearer(alice)).status == 200


def test_draft_requests_are_authorized_like_tus(server_factory, keys):
    """draft-ietf-httpbis-resumable-upload: the same tokens, owners and caps; a refused creation announces nothing."""
    from tus_helpers import draft_request

    secret = keys["secret"].read_bytes().rstrip(b"\n")
    server = server_factory("--auth-jwt-key", str(keys["secret"]))
    alice = make_token({"sub": "alice", "exp": int(time.time()) + HOUR}, "HS256", secret)
    bob = make_token({"sub": "bob", "exp": int(time.time()) + HOUR, "max_size": 100}, "HS256", secret)
    draft = {"Upload-Draft-Interop-Version": "9"}
    status, headers, _, informational = draft_request(
        server.port, "POST", "/files/", {**draft, "Upload-Complete": "?0"}, b"x" * 5)
    assert status == 401 and informational == [] and "www-authenticate" in headers
    status, headers, _, informational = draft_request(
        server.port, "POST", "/files/", {**draft, "Upload-Complete": "?0", **bearer(alice)}, b"x" * 5)
    assert status == 201 and [code for code, _ in informational] == [104]
    path = "/files/" + headers["location"].rsplit("/", 1)[1]
    assert draft_request(server.port, "HEAD", path, {**draft, **bearer(bob)})[0] == 404
    assert draft_request(server.port, "HEAD", path, {**draft, **bearer(alice)})[0] == 204
    assert request(server.port, "HEAD", path, bearer(alice)).status == 200, "tus sees alice's draft upload"
    status, headers, _, informational = draft_request(
        server.port, "POST", "/files/", {**draft, "Upload-Complete": "?1", **bearer(bob)}, b"x" * 101)
    assert status == 413 and informational == [] and headers["upload-limit"].startswith("max-size=100,")
