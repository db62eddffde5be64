"""Peak RSS of tus-server with many open HTTP/2 upload streams: `--connections` x `--streams` PATCH streams, each
with part of its body sent and the rest pending, sampled while all are open; then every body is finished and
every answer checked. Used by bench/run-h2."""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "Tests" / "interop"))
from h2_helpers import H2Client  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--cafile", required=True)
parser.add_argument("--connections", type=int, default=10)
parser.add_argument("--streams", type=int, default=100)
parser.add_argument("--pid", type=int, required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--idle-rss", type=int, default=0)
parser.add_argument("--body", type=int, default=256 * 1024)
parser.add_argument("--sent-first", type=int, default=64 * 1024)
args = parser.parse_args()

TUS = {"tus-resumable": "1.0.0"}


def rss_kib() -> int:
    for line in open(f"/proc/{args.pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


body = bytes(range(256)) * (args.body // 256)
clients = [H2Client(args.port, args.cafile, timeout=30) for _ in range(args.connections)]
paths = []
for client in clients:
    ids = [client.request("POST", "/files/", {**TUS, "upload-length": str(args.body)}) for _ in range(args.streams)]
    for stream_id in ids:
        response = client.get(stream_id, timeout=60)
        assert response.status == 201, response
        paths.append("/" + response.headers["location"].split("/", 3)[3])
open_streams = []
for n, client in enumerate(clients):
    for path in paths[n * args.streams:(n + 1) * args.streams]:
        stream_id = client.request("PATCH", path, {**TUS, "content-type": "application/offset+octet-stream",
                                                  "upload-offset": "0", "content-length": str(args.body)},
                                   end_stream=False)
        # Within the windows: 100 streams x 64 KiB exceed the 4 MiB connection window, so later streams wait
        # until the server consumed (wrote) earlier bytes.
        client.send_body(stream_id, body[:args.sent_first], end_stream=False)
        open_streams.append((client, stream_id))
deadline = time.monotonic() + 2
peak = 0
while time.monotonic() < deadline:
    for client in clients:
        client.pump(0.01)
    peak = max(peak, rss_kib())
for client, stream_id in open_streams:
    client.send_body(stream_id, body[args.sent_first:], end_stream=True)
statuses = []
for client, stream_id in open_streams:
    statuses.append(client.get(stream_id, timeout=120).status)
    peak = max(peak, rss_kib())
for client in clients:
    client.close()
row = {"test": "open-streams", "streams": len(open_streams), "all_204": all(s == 204 for s in statuses),
       "rss_idle_KiB": args.idle_rss, "rss_peak_sampled_KiB": peak,
       "KiB_per_open_stream": round((peak - args.idle_rss) / max(1, len(open_streams)), 1)}
print(json.dumps(row))
with open(args.out, "a") as out:
    out.write(json.dumps(row) + "\n")
