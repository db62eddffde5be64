"""Hooks against the real binary with a tusd-style receiver (hook_receiver.py) and executable hooks: payload
shape, order per upload, rejections with custom responses, ChangeFileInfo, post-finish only after pre-finish said
yes, StopUpload ending a running PATCH and terminating its upload, post-finish exactly once, retries after a 500, a
receiver that is down, pre-access and its cache, executables' environment and working directory (tusd v2.10.0's
pkg/handler/unrouted_handler.go and pkg/hooks/file)."""

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
from h2_helpers import H2Client
from hook_receiver import HookReceiver
from tus_helpers import OFFSET_STREAM, RawConnection, create_upload, head_offset, patch, request, wait_until

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


def test_post_finish_only_after_pre_finish_said_yes(server_factory, receiver):
    early: list[str] = []

    def pre_finish(call):
        uid = call["Event"]["Upload"]["ID"]
        time.sleep(0.3)  # a post-finish sent before this answer would arrive meanwhile
        if "post-finish" in receiver.for_upload(uid):
            early.append(uid)
        if call["Event"]["Upload"]["MetaData"].get("refuse") == "yes":
            return 500, {}
        return 200, {"HTTPResponse": {"Header": {"X-Processed": "yes"}}}
    receiver.responders["pre-finish"] = pre_finish
    server = server_factory("--hooks-http", receiver.url, "--hooks-http-retry", "0", "--loops", "2",
                            "--hooks-enabled-events", "pre-finish,post-receive,post-finish")
    accepted = [create_upload(server.port, 6) for _ in range(4)]
    for path in accepted:
        assert patch(server.port, path, 0, b"abc").status == 204
        finished = patch(server.port, path, 3, b"def")
        assert finished.status == 204 and finished.header("X-Processed") == "yes"
    for path in accepted:
        receiver.wait_for(lambda: "post-finish" in receiver.for_upload(upload_id(path)))
        order = receiver.for_upload(upload_id(path))
        assert order.index("pre-finish") < order.index("post-finish") and order.count("post-finish") == 1, order
    assert early == [], "post-finish arrived while pre-finish was still deciding"

    refused = create_upload(server.port, 3, "refuse " + base64.b64encode(b"yes").decode())
    answer = patch(server.port, refused, 0, b"abc")
    assert answer.status == 503 and answer.header("Retry-After"), "a failing pre-finish fails the answer"
    assert head_offset(server.port, refused) == 3, "the bytes are stored anyway"
    time.sleep(0.5)
    assert "pre-finish" in receiver.for_upload(upload_id(refused))
    assert "post-finish" not in receiver.for_upload(upload_id(refused)), "no post-finish without pre-finish's yes"


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("splice", ["on", "off"])
def test_stop_upload_ends_a_running_patch_and_terminates_the_upload(server_factory, receiver, splice):
    """tusd v2 writeChunk: the stop cancels the body, terminateUpload runs (post-terminate, no pre-terminate), then
    400 ERR_UPLOAD_STOPPED merged with the hook's HTTPResponse. Spliced and read bodies stop alike."""
    receiver.responders["post-receive"] = lambda call: (200, {"StopUpload": call["Event"]["Upload"]["Offset"] > 0,
                                                             "HTTPResponse": {"Body": "quota reached",
                                                                              "Header": {"X-Quota": "spent"}}})
    receiver.responders["pre-terminate"] = lambda call: (200, {"RejectTermination": True})
    server = server_factory("--hooks-http", receiver.url, "--progress-hooks-interval", "50", "--splice", splice,
                            "--hooks-enabled-events", "post-create,post-receive,pre-terminate,post-terminate,post-finish")
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
    assert response.body == b"quota reached" and response.header("X-Quota") == "spent"
    # tusd v2 terminates a stopped upload before it answers: gone at once, not a moment later.
    assert request(server.port, "HEAD", path).status in (404, 410)
    assert patch(server.port, path, 0, b"x").status in (404, 410)
    uid = upload_id(path)
    receiver.wait_for(lambda: "post-terminate" in receiver.for_upload(uid))
    assert "pre-terminate" not in receiver.for_upload(uid), "tusd's stop path asks no pre-terminate"
    assert "post-finish" not in receiver.for_upload(uid)


@pytest.mark.time_limit(60)
def test_stop_upload_over_http2_holds_the_stream_and_the_connection_goes_on(server_factory, receiver):
    """The StopUpload case on an h2c stream: the stopped stream gets no more window (the client is held within a
    stream window of what the server had when it stopped), the upload is terminated before the 400, the stream is
    reset with NO_ERROR after it (RFC 9113 §8.1), and the same connection serves the next request."""
    receiver.responders["post-receive"] = lambda call: (200, {"StopUpload": call["Event"]["Upload"]["Offset"] > 0,
                                                             "HTTPResponse": {"Body": "quota reached",
                                                                              "Header": {"X-Quota": "spent"}}})
    server = server_factory("--h2c", "--hooks-http", receiver.url, "--progress-hooks-interval", "50",
                            "--hooks-enabled-events", "post-create,post-receive,post-terminate,post-finish")
    total = 64 * 1024 * KiB
    path = create_upload(server.port, total)
    uid = upload_id(path)
    with H2Client(server.port, tls=False, timeout=20) as client:
        stream_id = client.request("PATCH", path, {"Tus-Resumable": "1.0.0", "Content-Type": OFFSET_STREAM,
                                                   "Upload-Offset": "0", "Content-Length": str(total)},
                                   end_stream=False)
        sent = 0
        deadline = time.monotonic() + 30
        while not client.done(stream_id) and time.monotonic() < deadline:
            size = min(client.sendable(stream_id), 64 * KiB, total - sent)
            if size > 0:
                # Paced (about 12 MiB/s), so the hook's answer finds the upload well short of its end.
                client.conn.send_data(stream_id, b"x" * size)
                client.flush()
                sent += size
                time.sleep(0.005)
            client.pump(0.001 if size > 0 else 0.05)
        stream = client.streams[stream_id]
        assert stream.status == 400, stream
        assert bytes(stream.data) == b"quota reached" and stream.headers.get("x-quota") == "spent"
        client.wait(lambda: stream.reset is not None, timeout=5, what="RST_STREAM after the answer")
        assert stream.reset == 0, "NO_ERROR: the request is not wanted any more, nothing went wrong"
        seen = max(call["Event"]["Upload"]["Offset"] for call in receiver.of_type("post-receive")
                   if call["Event"]["Upload"]["ID"] == uid)
        print(f"\n[h2 stop] sent={sent} offset_seen_by_the_stopping_hook={seen} total={total}")
        assert sent <= seen + 2 * 1024 * KiB, (sent, seen)
        # Terminated before the answer; the connection is fine.
        head = client.get(client.request("HEAD", path, {"Tus-Resumable": "1.0.0"}))
        assert head.status in (404, 410), head
    receiver.wait_for(lambda: "post-terminate" in receiver.for_upload(uid))
    assert "post-finish" not in receiver.for_upload(uid)


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


def test_executable_hooks_get_tusds_environment(server_factory, tmp_path):
    """tusd's file hooks: the server's environment plus TUS_ID, TUS_SIZE, TUS_OFFSET, run in the hooks directory."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    seen = tmp_path / "seen.jsonl"
    for name in ("pre-create", "post-create", "post-receive", "post-finish"):
        write_hook(hooks, name,
                   "import os\n"
                   f"open({str(seen)!r}, 'a').write(json.dumps({{'hook': request['Type'], "
                   "'id': os.environ.get('TUS_ID'), 'size': os.environ.get('TUS_SIZE'), "
                   "'offset': os.environ.get('TUS_OFFSET'), 'cwd': os.getcwd(), "
                   "'inherited': os.environ.get('TUS_TEST_INHERITED'), 'json_id': request['Event']['Upload']['ID']})"
                   " + '\\n')\n")
    os.environ["TUS_TEST_INHERITED"] = "from-the-server"
    try:
        server = server_factory("--hooks-dir", str(hooks), "--progress-hooks-interval", "0",
                                "--hooks-enabled-events", "pre-create,post-create,post-receive,post-finish")
    finally:
        del os.environ["TUS_TEST_INHERITED"]
    path = create_upload(server.port, 5)
    uid = upload_id(path)
    assert patch(server.port, path, 0, b"hello").status == 204

    def records() -> list[dict]:
        return [json.loads(line) for line in seen.read_text().splitlines()] if seen.exists() else []
    wait_until(lambda: any(r["hook"] == "post-finish" for r in records()), 10, message="post-finish ran")
    by_hook = {r["hook"]: r for r in records()}
    assert (by_hook["pre-create"]["id"], by_hook["pre-create"]["size"], by_hook["pre-create"]["offset"]) == ("", "5", "0")
    assert (by_hook["post-create"]["id"], by_hook["post-create"]["offset"]) == (uid, "0")
    assert (by_hook["post-receive"]["id"], by_hook["post-receive"]["offset"]) == (uid, "5")
    assert (by_hook["post-finish"]["id"], by_hook["post-finish"]["size"], by_hook["post-finish"]["offset"]) == \
        (uid, "5", "5")
    for record in by_hook.values():
        assert record["id"] == record["json_id"], "the environment names the upload of the JSON"
        assert os.path.realpath(record["cwd"]) == os.path.realpath(hooks), "runs in the hooks directory"
        assert record["inherited"] == "from-the-server", "the server's own environment is passed on"


def test_draft_uploads_fire_the_same_hooks_naming_their_protocol(server_factory, receiver):
    """draft-ietf-httpbis-resumable-upload uploads get tusd's events and payload, plus `Protocol` and
    `InteropVersion`; tus events say `Protocol: tus` and carry no `InteropVersion`."""
    from tus_helpers import draft_request

    server = server_factory("--hooks-http", receiver.url)
    status, headers, _, _ = draft_request(
        server.port, "POST", "/files/", {"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?1"}, b"hello")
    assert status == 201
    uid = headers["location"].rsplit("/", 1)[1]
    receiver.wait_for(lambda: "post-finish" in receiver.for_upload(uid))
    assert receiver.for_upload(uid).count("post-create") == 1 and receiver.for_upload(uid).count("post-finish") == 1
    finish = [call for call in receiver.of_type("post-finish") if call["Event"]["Upload"]["ID"] == uid][0]
    assert finish["Event"]["Protocol"] == "ietf-draft" and finish["Event"]["InteropVersion"] == 6
    assert (finish["Event"]["Upload"]["Size"], finish["Event"]["Upload"]["Offset"]) == (5, 5)
    assert set(finish["Event"]["HTTPRequest"]) == {"Method", "URI", "RemoteAddr", "Header"}
    tus_path = create_upload(server.port, 0)
    receiver.wait_for(lambda: "post-finish" in receiver.for_upload(tus_path.rsplit("/", 1)[1]))
    tus_finish = [call for call in receiver.of_type("post-finish")
                  if call["Event"]["Upload"]["ID"] == tus_path.rsplit("/", 1)[1]][0]
    assert tus_finish["Event"]["Protocol"] == "tus" and "InteropVersion" not in tus_finish["Event"]
