"""Assembling a final on the S3 store, side by side with boto3 doing the copies alone (issue 20, "Numbers").

One Ceph RGW, one bucket, 4 partials of --partial-mib each uploaded through tus-server --store s3. Then, alternating
per round:
  copies   boto3: CreateMultipartUpload, one UploadPartCopy per partial (all at once, --concurrency threads, as
           tus-server runs them), CompleteMultipartUpload: what RGW needs for the copies alone
  tus      POST Upload-Concat: final;<the 4 partials> (the server assembles before it answers, since the partials
           are complete), then a HEAD that shows Upload-Offset == Upload-Length
The ratio tus / copies is the target (<= 1.5). Then a final of --small-count partials of 4 MiB (below S3's 5 MiB
part minimum, so streamed through the server) is timed, with the server's peak RSS (VmHWM), to show that a streamed
copy keeps memory bounded. Results: results.jsonl and summary.md in --out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench" / "s3"))
from s3_bench import start_server, stop, vm_hwm_kib  # noqa: E402
from s3_helpers import CephRGW  # noqa: E402

MiB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}


def create(port: int, length: int) -> str:
    response = requests.post(f"http://127.0.0.1:{port}/files/", timeout=60,
                             headers={**TUS, "Upload-Concat": "partial", "Upload-Length": str(length)})
    assert response.status_code == 201, response.text
    return "/" + response.headers["Location"].split("/", 3)[3]


def upload_partial(port: int, data: bytes) -> str:
    path = create(port, len(data))
    response = requests.patch(f"http://127.0.0.1:{port}{path}", data=data, timeout=600,
                              headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert response.status_code == 204, response.text
    return path


def assemble(port: int, paths: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    response = requests.post(f"http://127.0.0.1:{port}/files/", timeout=600,
                             headers={**TUS, "Upload-Concat": "final;" + " ".join(paths)})
    assert response.status_code == 201, response.text
    final = "/" + response.headers["Location"].split("/", 3)[3]
    head = requests.head(f"http://127.0.0.1:{port}{final}", headers=TUS, timeout=600)
    elapsed = time.monotonic() - started
    assert head.headers.get("Upload-Offset") == head.headers.get("Upload-Length"), head.headers
    return elapsed, final.rsplit("/", 1)[1]


def copies_alone(s3, bucket: str, sources: list[str], key: str, concurrency: int) -> float:
    started = time.monotonic()
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def copy(number: int) -> dict:
        answer = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                     CopySource={"Bucket": bucket, "Key": sources[number - 1]})
        return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        parts = list(pool.map(copy, range(1, len(sources) + 1)))
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partial-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--small-count", type=int, default=32)
    parser.add_argument("--server-bin", default=str(ROOT / ".build/release/tus-server"))
    parser.add_argument("--work", default="/tmp/tus-s3-concat-bench")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()

    work = pathlib.Path(options.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    results.write_text("")

    def record(entry: dict) -> None:
        with results.open("a") as file:
            file.write(json.dumps(entry) + "\n")
        print(json.dumps(entry), flush=True)

    # Every byte stays in the memstore OSD's RAM until the gateway stops (RGW frees deleted objects hours later).
    total = 4 * options.partial_mib * MiB * (1 + 2 * options.rounds) + options.small_count * 8 * MiB
    os.environ["CEPH_MEMSTORE_BYTES"] = str(total + (1 << 30))
    rgw = CephRGW(work / "ceph").start()
    server = None
    try:
        s3 = rgw.client()
        bucket = "concat-bench"
        s3.create_bucket(Bucket=bucket)
        env = {**os.environ, **rgw.credentials_env()}
        spill = work / "spill"
        spill.mkdir()
        args = [*rgw.server_args(bucket), "--upload-dir", str(spill), "--s3-part-size", str(8 * MiB),
                "--s3-concurrency", str(options.concurrency)]
        server, port = start_server(options.server_bin, args, out / "server.log", env)

        pieces = [os.urandom(options.partial_mib * MiB) for _ in range(4)]
        expected = hashlib.sha256(b"".join(pieces)).hexdigest()
        paths = [upload_partial(port, piece) for piece in pieces]
        del pieces
        sources = [path.rsplit("/", 1)[1] for path in paths]
        load = os.getloadavg()[0]
        record({"step": "partials uploaded", "partials": 4, "mib_each": options.partial_mib, "load": load})

        ratios = []
        for round_number in range(options.rounds):
            order = ["copies", "tus"] if round_number % 2 == 0 else ["tus", "copies"]
            seconds = {}
            for kind in order:
                if kind == "copies":
                    seconds[kind] = copies_alone(s3, bucket, sources, f"baseline-{round_number}", options.concurrency)
                else:
                    seconds[kind], final = assemble(port, paths)
                    if round_number == 0:
                        digest = hashlib.sha256()
                        body = s3.get_object(Bucket=bucket, Key=final)["Body"]
                        for block in iter(lambda: body.read(MiB), b""):
                            digest.update(block)
                        assert digest.hexdigest() == expected, "the final's object is the partials' bytes"
            ratio = seconds["tus"] / seconds["copies"]
            ratios.append(ratio)
            record({"round": round_number + 1, "order": order, "copies_s": round(seconds["copies"], 3),
                    "tus_s": round(seconds["tus"], 3), "ratio": round(ratio, 3), "load": os.getloadavg()[0]})

        small = [upload_partial(port, os.urandom(4 * MiB)) for _ in range(options.small_count)]
        before = vm_hwm_kib(server.pid)
        streamed_seconds, _ = assemble(port, small)
        record({"step": "streamed final", "partials": options.small_count, "mib_each": 4,
                "seconds": round(streamed_seconds, 3),
                "mib_per_s": round(options.small_count * 4 / streamed_seconds, 1),
                "server_vmhwm_kib_before": before, "server_vmhwm_kib_after": vm_hwm_kib(server.pid)})
        record({"summary": "tus/copies", "median": round(statistics.median(ratios), 3),
                "min": round(min(ratios), 3), "max": round(max(ratios), 3)})
    finally:
        if server is not None:
            stop(server)
        rgw.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
