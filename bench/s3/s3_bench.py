"""Upload throughput into object storage, side by side in one run (issue 10, "Numbers").

Same Ceph RGW, same file, same part size and concurrency, alternating rounds:
  boto3      boto3's upload_file (multipart, TransferConfig(multipart_chunksize=P, max_concurrency=C)), defaults
             (since botocore 1.36 that computes a CRC32 of every part on the client)
  boto3-nocrc  the same with request_checksum_calculation="when_required" (no client-side checksum, as tus-server
             sends parts: UNSIGNED-PAYLOAD, no checksum header)
  tus-s3     tus-cli upload FILE -> tus-server --store s3 (one PATCH; parts of P, C in flight)
  tus-file   tus-cli upload FILE -> tus-server --store file (local disk, --fsync commit), for reference
Each tus round starts a fresh tus-server, so its VmHWM (peak RSS) is that upload's. The object each run made is
checked with boto3 (size, and sha256 of the first round).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "interop"))
from s3_helpers import CephRGW  # noqa: E402


def vm_hwm_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def start_server(binary: str, args: list[str], log: pathlib.Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--loops", "1", *args],
                               stdout=subprocess.PIPE, stderr=open(log, "ab"), env=env)
    line = process.stdout.readline().decode()
    match = re.match(r"listening on http://[^:]+:(\d+)/", line)
    if not match:
        process.kill()
        raise RuntimeError(f"no start-up line: {line!r}; see {log}")
    return process, int(match.group(1))


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=int, default=1 << 30)
    parser.add_argument("--part-size", type=int, default=8 << 20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-bin", default=str(ROOT / ".build/release/tus-server"))
    parser.add_argument("--cli-bin", default=str(ROOT / ".build/release/tus-cli"))
    parser.add_argument("--work", default="/tmp/tus-s3-bench")
    parser.add_argument("--base-server-bin", help="another tus-server (e.g. main's) measured as tus-s3-base")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()

    work = pathlib.Path(options.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    results.write_text("")

    payload = work / "payload.bin"
    with open(payload, "wb") as file:
        remaining = options.bytes
        while remaining > 0:
            block = os.urandom(min(remaining, 8 << 20))
            file.write(block)
            remaining -= len(block)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()

    # Every object stays (RGW frees deleted multipart data only at its garbage collection, hours later): a full
    # memstore OSD stalls every write. Four S3 uploads a round, and the OSD's memory is RAM.
    os.environ.setdefault("CEPH_MEMSTORE_BYTES", str(max(12 << 30, options.bytes * options.rounds * 4)))
    rgw = CephRGW(work / "ceph").start()
    try:
        s3 = rgw.client()
        s3.create_bucket(Bucket="bench")
        env = {**os.environ, **rgw.credentials_env()}
        transfer = TransferConfig(multipart_threshold=options.part_size, multipart_chunksize=options.part_size,
                                  max_concurrency=options.concurrency, use_threads=True)
        P, C = str(options.part_size), str(options.concurrency)

        def record(row: dict) -> None:
            row["mb_per_s"] = round(options.bytes / row["seconds"] / 1e6, 1)
            row["load1"] = round(os.getloadavg()[0], 1)  # other processes on the box, after the run
            with open(results, "a") as file:
                file.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)

        plain = boto3.client(
            "s3", endpoint_url=rgw.endpoint, region_name="us-east-1",
            aws_access_key_id=rgw.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=rgw.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"))
        for round_number in range(options.rounds):
            for kind, client in (("boto3", s3), ("boto3-nocrc", plain)):
                key = f"{kind}-{round_number}"
                started = time.monotonic()
                client.upload_file(str(payload), "bench", key, Config=transfer)
                record({"run": kind, "round": round_number, "seconds": time.monotonic() - started})
                assert s3.head_object(Bucket="bench", Key=key)["ContentLength"] == options.bytes

            kinds = ("tus-s3", "tus-s3-base", "tus-file") if options.base_server_bin else ("tus-s3", "tus-file")
            for kind in kinds:
                spill = work / f"{kind}-{round_number}"
                spill.mkdir()
                if kind.startswith("tus-s3"):
                    args = ["--upload-dir", str(spill), "--store", "s3", "--s3-bucket", "bench", "--s3-endpoint",
                            rgw.endpoint, "--s3-path-style", "--s3-part-size", P, "--s3-concurrency", C,
                            "--s3-prefix", f"{kind}-r{round_number}/"]
                else:
                    args = ["--upload-dir", str(spill), "--store", "file"]
                binary = options.base_server_bin if kind == "tus-s3-base" else options.server_bin
                process, port = start_server(binary, args, out / f"{kind}.log", env)
                try:
                    started = time.monotonic()
                    subprocess.run([options.cli_bin, "upload", str(payload), f"http://127.0.0.1:{port}/files/",
                                    "--no-resume", "-q", "--timeout", "120"], check=True, timeout=900, env=env)
                    seconds = time.monotonic() - started
                    peak = vm_hwm_kib(process.pid)
                finally:
                    stop(process)
                record({"run": kind, "round": round_number, "seconds": seconds, "peak_rss_mib": round(peak / 1024, 1)})
                if kind.startswith("tus-s3"):
                    listed = s3.list_objects_v2(Bucket="bench", Prefix=f"{kind}-r{round_number}/")["Contents"]
                    data = [item for item in listed if not item["Key"].endswith(".info")]
                    assert len(data) == 1 and data[0]["Size"] == options.bytes, listed
                    if round_number == 0:
                        body = s3.get_object(Bucket="bench", Key=data[0]["Key"])["Body"]
                        sha = hashlib.sha256()
                        for block in iter(lambda: body.read(8 << 20), b""):
                            sha.update(block)
                        assert sha.hexdigest() == digest, "the object is the file"
                    assert s3.list_multipart_uploads(Bucket="bench").get("Uploads", []) == []
                subprocess.run(["rm", "-rf", str(spill)], check=True)
    finally:
        rgw.stop()

    rows = [json.loads(line) for line in results.read_text().splitlines()]
    def median(kind: str, field: str) -> float:
        return statistics.median(row[field] for row in rows if row["run"] == kind)
    boto, ours, local = median("boto3", "mb_per_s"), median("tus-s3", "mb_per_s"), median("tus-file", "mb_per_s")
    nocrc = median("boto3-nocrc", "mb_per_s")
    lines = [
        f"# S3 store throughput, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{options.bytes} bytes, part size {options.part_size}, concurrency {options.concurrency}, "
        f"{options.rounds} alternating rounds; Ceph RGW 16.2.15 (memstore OSD) on 127.0.0.1; 2 shared cores.",
        "",
        "| run | MB/s per round | median MB/s | peak RSS of tus-server (MiB) |",
        "|---|---|---|---|",
    ]
    for kind in ("boto3", "boto3-nocrc", "tus-s3", "tus-s3-base", "tus-file"):
        if not any(row["run"] == kind for row in rows):
            continue
        speeds = ", ".join(str(row["mb_per_s"]) for row in rows if row["run"] == kind)
        peaks = ", ".join(str(row["peak_rss_mib"]) for row in rows if row["run"] == kind and "peak_rss_mib" in row)
        lines.append(f"| {kind} | {speeds} | {median(kind, 'mb_per_s')} | {peaks or '-'} |")
    loads = [row["load1"] for row in rows]
    lines += ["", f"1-minute load average after each run: {min(loads)}-{max(loads)} "
              f"(median {statistics.median(loads)})"]
    rounds = sorted({row["round"] for row in rows})
    def speed(kind: str, number: int) -> float:
        return next(row["mb_per_s"] for row in rows if row["run"] == kind and row["round"] == number)
    for peer in ("boto3", "boto3-nocrc"):
        ratios = sorted(speed("tus-s3", n) / speed(peer, n) for n in rounds)
        lines.append(f"tus-s3 / {peer} per round: min {ratios[0]:.2f}x, median {statistics.median(ratios):.2f}x, "
                     f"max {ratios[-1]:.2f}x")
    lines += ["", f"tus-s3 / boto3 (median): {ours / boto:.2f}x", f"tus-s3 / boto3-nocrc (median): {ours / nocrc:.2f}x",
              f"tus-s3 / tus-file (median): {ours / local:.2f}x", ""]
    if options.base_server_bin:
        base = median("tus-s3-base", "mb_per_s")
        lines[-1:-1] = [f"tus-s3-base ({options.base_server_bin}) / boto3-nocrc (median): {base / nocrc:.2f}x"]
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
