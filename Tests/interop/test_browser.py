"""A real browser as the tus client: headless Chromium, driven by Selenium, uploads over HTTPS where ALPN picks h2.

The page and its tus client are the project's own (Tests/interop/browser: tus-js-client's browser bundle is not on
a registry the test machines reach). The page comes from a small HTTP server on another port, so every request to
tus-server is cross-origin: Chromium sends CORS preflights and reads only the headers the server exposes, as it
would for tus-js-client or Uppy on a web site. Chromium trusts the test certificate by its SPKI hash
(--ignore-certificate-errors-spki-list, which leaves every other certificate check on), in a throwaway profile.

What is checked: uploads complete (HEAD Upload-Offset == Upload-Length) and the stored bytes are exact; every request
to tus-server went over h2 (Chromium's network log and the server's own log agree; the page's resource timing cannot
say, as nextHopProtocol is hidden cross-origin); the parallel uploads shared one connection as concurrent streams; an
upload whose streamed PATCH is aborted mid-body keeps the bytes that arrived and resumes from what HEAD reports.

Skipped only when chromium or chromedriver is not installed (scripts/bootstrap.sh installs both for CI).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import threading

import pytest

from test_tls import pki  # noqa: F401  (a fixture: test CA and two leaf certificates)
from tus_helpers import TusServer

PAGE_DIR = pathlib.Path(__file__).resolve().parent / "browser"
SCRIPT_SECONDS = 40  # bound on one page call (execute_async_script)
CHUNK = 256 * 1024
# Three files at once, each several PATCHes; odd lengths so the last chunk is short.
PARALLEL_FILES = [
    {"name": "first.bin", "seed": 1, "length": 1_300_001},
    {"name": "second.bin", "seed": 2, "length": 900_017},
    {"name": "third.bin", "seed": 3, "length": 1_048_576 + 3},
]
INTERRUPTED_FILE = {"name": "interrupted.bin", "seed": 9, "length": 2 * 1024 * 1024 + 11}
PART_BYTES = 300_007  # what the interrupted PATCH sends before its body stalls and the page aborts it


def pattern_bytes(seed: int, length: int) -> bytes:
    """The same bytes as patternBytes() in tus-upload.js."""
    return bytes((((i * 2654435761) & 0xFFFFFFFF) >> 24) ^ seed for i in range(length))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Skipped before any fixture runs (no certificates made, no server started) when the browser is missing.
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver are not installed (apt chromium chromium-driver; scripts/bootstrap.sh "
           "installs them)")


def spki_sha256_base64(certificate: pathlib.Path) -> str:
    """What --ignore-certificate-errors-spki-list wants: base64(SHA-256(SubjectPublicKeyInfo DER))."""
    public_key = subprocess.run(["openssl", "x509", "-in", str(certificate), "-pubkey", "-noout"],
                                capture_output=True, check=True, timeout=20).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=public_key,
                         capture_output=True, check=True, timeout=20).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            capture_output=True, check=True, timeout=20).stdout
    return base64.b64encode(digest).decode()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def page_origin():
    """The test page over plain HTTP on 127.0.0.1 (a secure context all the same), in a thread of this process."""
    handler = functools.partial(QuietHandler, directory=str(PAGE_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def h2_tls_server(pki, tmp_path):  # noqa: F811 (pki is the imported fixture)
    """tus-server over TLS with HTTP/2 offered (the default) and debug logging, which names each request's h2
    stream. Any origin may use it (--cors-origins defaults to *)."""
    directory, (pem, key), _ = pki
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    server = TusServer(upload_dir, "--tls-certificate", str(pem), "--tls-key", str(key), "--log-level", "debug",
                       log_path=tmp_path / "server.log").start()
    assert server.scheme == "https"
    yield server
    server.stop(grace=5)


def descendants(pid: int) -> list[int]:
    """PIDs of the processes below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


@pytest.fixture
def browser(pki, tmp_path):  # noqa: F811
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    directory, (pem, _), _ = pki
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",  # the SPKI list is honoured only with its own profile
        f"--ignore-certificate-errors-spki-list={spki_sha256_base64(pem)}",
    ):
        options.add_argument(argument)
    # Chromium's DevTools network events: protocol and connection of every response.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver_pid = service.process.pid
    started = descendants(driver_pid)
    driver.set_script_timeout(SCRIPT_SECONDS)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        started += descendants(driver_pid)
        try:
            driver.quit()
        finally:
            # quit() ends Chromium; whatever of it or chromedriver outlived that goes now, by PID (checking the
            # PID still names a Chromium process, in case it was reused).
            for pid in [driver_pid, *started]:
                try:
                    if "chrom" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass


def run_in_page(driver, expression: str):
    """Awaits `expression` (a promise) in the page; returns its value or raises with the page's error."""
    outcome = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"Promise.resolve().then(() => {expression}).then("
        "  (value) => done({ok: true, value}),"
        "  (error) => done({ok: false, error: String((error && error.stack) || error)}));")
    assert outcome["ok"], f"page: {outcome['error']}"
    return outcome["value"]


def network_events(driver, origin: str) -> tuple[list[dict], int]:
    """From Chromium's DevTools network events (the performance log; reading it empties it): the responses from
    `origin` (preflights included), oldest first, and the most tus requests (preflights not counted) to `origin`
    that were in flight at once, from Network.requestWillBeSent to Network.responseReceived (tus answers have no
    body; Chromium reports the unread ones as loadingFailed when it drops them, much later)."""
    responses, events, urls = [], [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message["method"], message["params"]
        if (method == "Network.requestWillBeSent" and params["request"]["url"].startswith(origin)
                and params["request"]["method"] != "OPTIONS" and params.get("type") != "Preflight"):
            urls[params["requestId"]] = params["request"]["url"]
            events.append((params["timestamp"], 1))
        elif method == "Network.responseReceived" and params["response"]["url"].startswith(origin):
            if params["requestId"] in urls and params.get("type") != "Preflight":
                events.append((params["timestamp"], -1))
            response = params["response"]
            responses.append({"url": response["url"], "status": response["status"],
                              "protocol": response.get("protocol"), "connection": response.get("connectionId"),
                              "type": params.get("type")})
    in_flight = most = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):  # an end before a start at a tie
        in_flight += change
        most = max(most, in_flight)
    return responses, most


H2_REQUEST_LOG = re.compile(r"(OPTIONS|POST|PATCH|HEAD|GET) (/files/\S*) -> (\d+) \(h2 stream (\d+)\)")
ANY_REQUEST_LOG = re.compile(r"(OPTIONS|POST|PATCH|HEAD|GET) (/files/\S*) -> (\d+)")


def server_requests(server: TusServer) -> tuple[list[tuple[str, str, int, int]], list[str]]:
    """From the server's debug log: the requests it answered over HTTP/2 (method, target, status, stream id), and
    any lines of requests it answered over HTTP/1.1."""
    text = server.log_text()
    h2 = [(m[1], m[2], int(m[3]), int(m[4])) for m in H2_REQUEST_LOG.finditer(text)]
    h1 = [line for line in text.splitlines() if ANY_REQUEST_LOG.search(line) and "(h2 stream" not in line]
    return h2, h1


def tus_origin(server: TusServer) -> str:
    # "localhost", not 127.0.0.1: the page is on 127.0.0.1, and the certificate names both.
    return f"https://localhost:{server.port}"


def upload_metadata(header: str) -> dict[str, str]:
    """An Upload-Metadata value (the .info record keeps it as sent) as a dict of decoded values."""
    pairs = (item.strip().split(" ", 1) for item in header.split(",") if item.strip())
    return {pair[0]: base64.b64decode(pair[1]).decode() if len(pair) > 1 else "" for pair in pairs}


def assert_stored_exactly(server: TusServer, upload: dict) -> None:
    stored = server.data_file(upload["url"]).read_bytes()
    expected = pattern_bytes(upload["seed"], upload["length"])
    assert len(stored) == len(expected), f"{upload['name']}: {len(stored)} bytes stored, {len(expected)} sent"
    assert stored == expected, f"{upload['name']}: stored bytes differ from the ones the page generated"
    record = json.loads((server.upload_dir / f"{server.data_file(upload['url']).name}.info").read_text())
    # A PATCH that only moves the offset rewrites no record (README, "Storage and durability"): the record holds the
    # length and no pending discard, and recovery takes the offset from the data file checked above.
    assert record["length"] == upload["length"] and record.get("pendingDiscardFrom") is None


def test_browser_uploads_files_in_parallel_over_h2(browser, page_origin, h2_tls_server):
    origin = tus_origin(h2_tls_server)
    browser.get(f"{page_origin}/upload.html")
    uploads = run_in_page(
        browser, f"uploadInParallel({json.dumps(origin + '/files/')}, {json.dumps(PARALLEL_FILES)}, {CHUNK})")

    assert len(uploads) == len(PARALLEL_FILES)
    for upload in uploads:
        assert upload["url"].startswith(origin + "/files/"), upload
        assert upload["offset"] == upload["length"] and upload["headOffset"] == upload["length"], upload
        assert_stored_exactly(h2_tls_server, upload)
    names = {upload_metadata(json.loads(path.read_text())["metadata"])["filename"]
             for path in h2_tls_server.info_files()}
    assert names == {file["name"] for file in PARALLEL_FILES}, "Upload-Metadata as the page encoded it"

    # ALPN picked h2 for every request. The page itself cannot tell: resource timing's nextHopProtocol is ""
    # for a cross-origin response without Timing-Allow-Origin, which tus-server does not send. Chromium's network
    # stack says so (and which connection carried each response)...
    responses, most_in_flight = network_events(browser, origin)
    assert len(responses) >= len(PARALLEL_FILES) * 3, responses
    assert {r["protocol"] for r in responses} == {"h2"}, responses
    # ...and from the server, which answered every request as an HTTP/2 stream, preflights included.
    h2_requests, h1_requests = server_requests(h2_tls_server)
    assert not h1_requests, h1_requests
    methods = [method for method, *_ in h2_requests]
    chunks = sum(-(-file["length"] // CHUNK) for file in PARALLEL_FILES)
    assert methods.count("POST") == len(PARALLEL_FILES)
    assert methods.count("PATCH") == chunks
    assert methods.count("HEAD") == len(PARALLEL_FILES)
    assert methods.count("OPTIONS") >= 1, "cross-origin requests with tus headers need a preflight"
    assert all(status < 400 for _, _, status, _ in h2_requests), h2_requests

    # One connection, many streams: all responses, preflights too, name one connection, and the stream ids run up to
    # 2n-1 for n requests, which only one connection carrying all of them gives (each new one starts at 1).
    connections = {r["connection"] for r in responses}
    assert len(connections) == 1, f"requests spread over connections {connections}"
    assert max(stream for *_, stream in h2_requests) == 2 * len(h2_requests) - 1, h2_requests
    # Each file's requests follow one another, so at most one per file is outstanding; all files' at once.
    assert most_in_flight == len(PARALLEL_FILES), f"at most {most_in_flight} requests in flight at once"
    print(f"{len(h2_requests)} requests on one connection, up to {most_in_flight} in flight at once")


def test_browser_resumes_an_interrupted_upload_from_head(browser, page_origin, h2_tls_server):
    origin = tus_origin(h2_tls_server)
    browser.get(f"{page_origin}/upload.html")
    # Two whole chunks, then the stalled PATCH; the page waits up to 10 s for HEAD to show its bytes.
    upload = run_in_page(browser, f"uploadWithInterruption({json.dumps(origin + '/files/')}, "
                                  f"{json.dumps(INTERRUPTED_FILE)}, {CHUNK}, 2, {PART_BYTES}, 10000)")

    stalled_at = 2 * CHUNK + PART_BYTES
    assert upload["stoppedAt"] == 2 * CHUNK, upload
    assert upload["abortOutcome"] == "aborted", upload
    # While the stalled PATCH was still open, HEAD already reported the bytes it had delivered...
    assert upload["offsetBeforeAbort"] == stalled_at, upload
    # ...the abort (RST_STREAM) kept them, and the resume went on from exactly there.
    assert upload["offsetsSeen"][-1] == stalled_at, upload
    assert upload["headOffset"] == upload["length"], upload
    assert_stored_exactly(h2_tls_server, upload)
    h2_requests, h1_requests = server_requests(h2_tls_server)
    assert not h1_requests, h1_requests
    patches = [(target, status) for method, target, status, _ in h2_requests if method == "PATCH"]
    resumed = -(-(upload["length"] - stalled_at) // CHUNK)
    # The aborted PATCH usually gets no answer. But Chromium may end the streamed body (an empty DATA frame with
    # END_STREAM) before its RST_STREAM CANCEL, as its net-log showed in about one run in five; then the server
    # sees a complete 300007-byte PATCH and answers 204 to a stream the page has already given up on.
    assert len(patches) in (2 + resumed, 3 + resumed), patches
    assert all(status == 204 for _, status in patches), patches
