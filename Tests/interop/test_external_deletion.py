"""Uploads whose files an operator or a cleanup job deleted behind the server's back (the file store): HEAD, PATCH and
GET answer 404 as for an id never seen, tus and draft alike, and the upload is forgotten, record included."""

from __future__ import annotations

from ietf_client import DraftClient, path_of
from tus_helpers import create_upload, patch, request, wait_until


def test_uploads_deleted_outside_the_server_answer_404(server):
    headed = create_upload(server.port, 10)
    patched = create_upload(server.port, 10)
    assert patch(server.port, patched, 0, b"abc").status == 204
    draft = DraftClient(server.port, 6)
    created = draft.create("/files/", b"xyz", complete=False, length=10)
    assert created.status == 201, created
    drafted = path_of(created.header("location"))
    for path in (headed, patched, drafted):
        assert request(server.port, "HEAD", path).status == 200
        data_file = server.data_file(path)
        data_file.unlink()
        data_file.with_name(data_file.name + ".info").unlink(missing_ok=True)

    # HEAD answers from memory: the deletion itself is what the server hears (inotify), no request has to touch it.
    wait_until(lambda: request(server.port, "HEAD", headed).status == 404, timeout=5, message="HEAD 404")
    response = patch(server.port, patched, 3, b"defg")
    assert response.status == 404, response
    assert request(server.port, "GET", patched).status == 404
    assert draft.offset(drafted).status == 404
    assert draft.append(drafted, 3, b"more", complete=True).status == 404

    # Only the data file deleted: the record goes with the upload, so a restart does not bring it back empty.
    kept_record = create_upload(server.port, 10)
    data_file = server.data_file(kept_record)
    data_file.unlink()
    wait_until(lambda: request(server.port, "HEAD", kept_record).status == 404, timeout=5, message="HEAD 404")
    wait_until(lambda: not data_file.with_name(data_file.name + ".info").exists(), timeout=5, message="record gone")
    assert request(server.port, "HEAD", create_upload(server.port, 1)).status == 200, "the server keeps serving"
