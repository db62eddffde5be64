"""Makes JWTs for the tests with the standard library and the `openssl` command line (no JWT package): HS256
with hmac, RS256 and ES256 by `openssl dgst -sign` (ES256's DER signature converted to JWS's r || s)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import subprocess


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der_to_raw(der: bytes) -> bytes:
    # SEQUENCE { INTEGER r, INTEGER s }, short-form lengths (P-256 signatures fit).
    assert der[0] == 0x30
    index = 2
    parts = []
    for _ in range(2):
        assert der[index] == 0x02
        length = der[index + 1]
        value = der[index + 2:index + 2 + length]
        parts.append(value.lstrip(b"\x00").rjust(32, b"\x00"))
        index += 2 + length
    return parts[0] + parts[1]


def make_token(claims: dict, alg: str, key: bytes | pathlib.Path | None = None, header: dict | None = None) -> str:
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
    if alg == "none":
        return signing_input + "."
    if alg == "HS256":
        assert isinstance(key, bytes)
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    else:
        signed = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(key)], input=signing_input.encode(), capture_output=True,
            check=True, timeout=30).stdout
        signature = _der_to_raw(signed) if alg == "ES256" else signed
    return f"{signing_input}.{b64url(signature)}"


def make_keys(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """RSA 2048 and P-256 key pairs plus an HS256 secret file, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("rsa.pem", "rsa.pub", "ec.pem", "ec.pub", "secret")}
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("openssl", "genrsa", "-out", str(paths["rsa.pem"]), "2048")
    run("openssl", "rsa", "-in", str(paths["rsa.pem"]), "-pubout", "-out", str(paths["rsa.pub"]))
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(paths["ec.pem"]))
    run("openssl", "ec", "-in", str(paths["ec.pem"]), "-pubout", "-out", str(paths["ec.pub"]))
    paths["secret"].write_bytes(b"0123456789abcdef0123456789abcdef-shared\n")
    return paths
