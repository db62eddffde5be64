"""Hooks against the real binary with a tusd-style receiver (hook_receiver.py) and executable hooks: payload
shape, order per upload, rejections with custom responses, ChangeFileInfo, StopUpload ending a running PATCH,
post-finish exactly once, retries after a 500, a receiver that is down, pre-access and its cache."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import socket
import stat
import time

import pytest

from cluster_helpers import free_port
from hook_receiver import HookReceiver
from tus_helpers import OFFSET_STREAM, RawConnection, create_upload, patch, request, wait_until

KiB = 1024


@pytest.fixture
def receiver():
    instance = HookReceiver().start()
    yield instance
    instance.stop()


def upload_id(path: str) -> str:
    return path.rsplit("/", 1)[1]


def test_post_hooks_arrive_in_order_with_tusds_payload(server_factory, receiver):
    server = server_factory("--hooks-http", receiver.url, "--progress-hooks-interval", "0", "--loops", "2")
    metadata = "filename " + base64.b64encode(b"report.pdf").decode()
    created = request(server.port, "POST", "/files/", {"Upload-Length": "10", "Upload-Metadata": metadata,
                                                        "Content-Length": "0", "X-Request-ID": "req-create-1"})
    assert created.status == 201
    path = re.sub(r"^https?://[^/]+", "", created.header("Location"))
    uid = upload_id(path)
    assert patch(server.port, path, 0, b"a" * 4).status == 204
    assert patch(server.port, path, 4, b"b" * 6).status == 204
    assert patch(server.port, path, 10, b"").status == 204, "an empty PATCH at the end finishes nothing again"
    receiver.wait_for(lambda: "post-finish" in receiver.for_upload(uid))
    time.sleep(0.3)
    order = receiver.for_upload(uid)
    assert order[0] == "post-create" and order[-1] == "post-finish", order
    assert order.count("post-finish") == 1, order
    assert set(order[1:-1]) == {"post-receive"}, order

    pre = receiver.of_type("pre-create")[-1]
    assert pre["Event"]["Upload"]["ID"] == ""
    finish = [call for call in receiver.of_type("post-finish") if call["Event"]["Upload"]["ID"] == uid][0]
    upload = finish["Event"]["Upload"]
    assert set(upload) == {"ID", "Size", "SizeIsDeferred", "Offset", "MetaData", "IsPartial", "IsFinal",
                           "PartialUploads", "Storage"}
    assert (upload["Size"], upload["Offset"], upload["SizeIsDeferred"]) == (10, 10, False)
    assert upload["MetaData"] == {"filename": "report.pdf"}
    assert (upload["IsPartial"], upload["IsFinal"], upload["PartialUploads"]) == (False, False, None)
    assert upload["Storage"]["Type"] == "filestore" and upload["Storage"]["Path"].endswith(uid)
    http = finish["Event"]["HTTPRequest"]
    assert set(http) == {"Method", "URI", "RemoteAddr", "Header"}
    assert http["Method"] == "PATCH" and http["URI"] == path
    assert re.fullmatch(r"127\.0\.0\.1:\d+", http["RemoteAddr"])
    assert http["Header"]["Tus-Resumable"] == ["1.0.0"]
    created_call = [call for call in receiver.of_type("post-create") if call["Event"]["Upload"]["ID"] == uid][0]
    assert created_call["Event"]["HTTPRequest"]["Header"]["X-Request-Id"] == ["req-create-1"]
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_pre_create_rejects_with_the_receivers_response(server_factory, receiver):
    def policy(call):
        if call["Event"]["Upload"]["MetaData"].get("filename") != "forbidden.exe":
            return 200, {"HTTPResponse": {"Header": {"X-Checked": "yes"}}}
        return 200, {"RejectUpload": True,
                     "HTTPResponse": {"StatusCode": 418, "Body": "no executables", "Header": {"X-Reason": "policy"}}}
    receiver.responders["pre-create"] = policy
    server = server_factory("--hooks-http", receiver.url)
    bad = "filename " + base64.b64encode(b"forbidden.exe").decode()
    rejected = request(server.port, "POST", "/files/", {"Upload-Length": "5", "Upload-Metadata": bad, "Content-Length": "0"})
    assert rejected.status == 418 and rejected.body == b"no executables" and rejected.header("X-Reason") == "policy"
    assert not receiver.of_type("post-create"), "nothing was created"
    good = "filename " + base64.b64encode(b"fine.txt").decode()
    accepted = request(server.port, "POST", "/files/", {"Upload-Length": "5", "Upload-Metadata": good, "Content-Length": "0"})
    assert accepted.status == 201 and accepted.header("Location")
    assert accepted.header("X-Checked") == "yes", "HTTPResponse also shapes an accepted creation (tusd merges it)"


def test_change_file_info_sets_id_and_metadata(server_factory, receiver):
    receiver.responders["pre-create"] = lambda call: (200, {"ChangeFileInfo": {"ID": "chosen-by-hook", "MetaData": {"filename": "renamed.txt"}}})
    server = server_factory("--hooks-http", receiver.url)
    path = create_upload(server.port, 5, "filename " + base64.b64encode(b"original.txt").decode())
    assert path == "/files/chosen-by-hook"
    head = request(server.port, "HEAD", path)
    assert head.header("Upload-Metadata") == "filename " + base64.b64encode(b"renamed.txt").decode()


@pytest.mark.time_limit(60)
def test_stop_upload_ends_a_running_patch(server_factory, receiver):
    receiver.responders["post-receive"] = lambda call: (200, {"StopUpload": call["Event"]["Upload"]["Offset"] > 0,
                                                             "HTTPResponse": {"Body": "quota reached"}})
    server = server_factory("--hooks-http", receiver.url, "--progress-hooks-interval", "50")
    total = 4 * 1024 * KiB
    path = create_upload(server.port, total)
    with RawConnection(server.port, timeout=20) as connection:
        head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OFFSET_STREAM}\r\n"
                f"Upload-Offset: 0\r\nContent-Length: {total}\r\n\r\n")
        connection.send(head.encode())
        sent = 0
        connection.sock.settimeout(0.05)
        response = None
        while sent < total:
            try:
                connection.sock.sendall(b"x" * (64 * KiB))
            except OSError:
                break
            sent += 64 * KiB
            time.sleep(0.02)
            try:
                if connection._fill():
                    break
            except socket.timeout:
                pass
        connection.sock.settimeout(10)
        response = connection.read_response()
    assert response is not None and response.status == 400, response
    assert response.body == b"quota reached"
    offset = int(request(server.port, "HEAD", path).header("Upload-Offset"))
    assert 0 < offset < total, "bytes before the stop are kept; the rest never came"


def test_post_hooks_are_retried_after_a_500(server_factory, receiver):
    failures = {"left": 2}

    def flaky(call):
        if failures["left"] > 0:
            failures["left"] -= 1
            return 500, {}
        return 200, {}
    receiver.responders["post-create"] = flaky
    server = server_factory("--hooks-http", receiver.url, "--hooks-http-retry", "3", "--hooks-http-backoff", "50ms",
                            "--hooks-enabled-events", "post-create")
    path = create_upload(server.port, 5)
    receiver.wait_for(lambda: len(receiver.of_type("post-create")) == 3)
    assert all(call["Event"]["Upload"]["ID"] == upload_id(path) for call in receiver.of_type("post-create"))
    metrics = request(server.port, "GET", "/metrics").body.decode()
    assert 'tusd_hook_errors_total{hooktype="post-create"} 0' in metrics
    assert 'tusd_hook_invocations_total{hooktype="post-create"} 1' in metrics


def test_a_receiver_that_is_down(server_factory):
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    gated = server_factory("--hooks-http", dead, "--hooks-http-retry", "1", "--hooks-http-backoff", "10ms")
    refused = request(gated.port, "POST", "/files/", {"Upload-Length": "5", "Content-Length": "0"})
    assert refused.status == 503 and refused.header("Retry-After"), "pre-create fails closed"
    relaxed = server_factory("--hooks-http", dead, "--hooks-http-retry", "1", "--hooks-http-backoff", "10ms",
                             "--hooks-enabled-events", "post-create,post-finish")
    path = create_upload(relaxed.port, 3)
    assert patch(relaxed.port, path, 0, b"abc").status == 204, "post-* hooks never hold an upload up"
    wait_until(lambda: "post-finish failed after retries" in relaxed.log_text(), 10, message="logged failure")
    line = next(l for l in relaxed.log_text().splitlines() if "post-finish failed after retries" in l)
    assert upload_id(path) in line and "request_id=" in line
    metrics = request(relaxed.port, "GET", "/metrics").body.decode()
    assert 'tusd_hook_errors_total{hooktype="post-finish"} 1' in metrics


def test_pre_access_rejects_and_caches(server_factory, receiver):
    receiver.responders["pre-access"] = lambda call: (200, {
        "RejectAccess": call["Event"]["HTTPRequest"]["Header"].get("Authorization") != ["Bearer good"],
        "HTTPResponse": {"StatusCode": 401} if call["Event"]["HTTPRequest"]["Header"].get("Authorization") is None else {}})
    server = server_factory("--hooks-http", receiver.url, "--hooks-enabled-events", "pre-access", "--pre-access-cache", "5")
    assert request(server.port, "POST", "/files/", {"Upload-Length": "5", "Content-Length": "0"}).status == 401
    assert request(server.port, "POST", "/files/", {"Upload-Length": "5", "Content-Length": "0", "Authorization": "Bearer bad"}).status == 403
    created = request(server.port, "POST", "/files/", {"Upload-Length": "5", "Content-Length": "0", "Authorization": "Bearer good"})
    assert created.status == 201
    path = re.sub(r"^https?://[^/]+", "", created.header("Location"))
    before = len(receiver.of_type("pre-access"))
    for _ in range(20):
        assert request(server.port, "HEAD", path, {"Authorization": "Bearer good"}).status == 200
    assert len(receiver.of_type("pre-access")) == before + 1, "one question per upload and credential while cached"
    assert request(server.port, "HEAD", path, {"Authorization": "Bearer bad"}).status == 403
    assert request(server.port, "OPTIONS", path).status == 204


def write_hook(directory: pathlib.Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env python3\nimport json, sys\nrequest = json.load(sys.stdin)\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_executable_hooks(server_factory, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    log = tmp_path / "finished.log"
    write_hook(hooks, "pre-create",
               "name = request['Event']['Upload']['MetaData'].get('filename', '')\n"
               "if name == 'bad.bin':\n"
               "    print(json.dumps({'RejectUpload': True, 'HTTPResponse': {'StatusCode': 422, 'Body': 'bad name'}}))\n")
    write_hook(hooks, "post-finish",
               f"open({str(log)!r}, 'a').write(request['Event']['Upload']['ID'] + '\\n')\n")
    write_hook(hooks, "pre-terminate", "sys.exit(3)\n")
    server = server_factory("--hooks-dir", str(hooks), "--hooks-enabled-events", "pre-create,post-finish,pre-terminate")
    bad = request(server.port, "POST", "/files/", {"Upload-Length": "3", "Content-Length": "0",
                                                     "Upload-Metadata": "filename " + base64.b64encode(b"bad.bin").decode()})
    assert bad.status == 422 and bad.body == b"bad name"
    path = create_upload(server.port, 3, "filename " + base64.b64encode(b"ok.txt").decode())
    assert patch(server.port, path, 0, b"abc").status == 204
    wait_until(lambda: log.exists() and log.read_text().strip() == upload_id(path), 10, message="post-finish ran")
    assert request(server.port, "DELETE", path).status == 503, "a failing pre-terminate executable fails closed"
    assert request(server.port, "HEAD", path).status == 200
