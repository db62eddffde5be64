"""Where the time of an S3 upload goes, tus-server vs boto3 (issue 20): one upload of each, alternating, on one RGW.

For each upload it reports
  - wall time and MB/s;
  - CPU seconds (user + system) of every process involved: the uploader (boto3's Python, or tus-cli and
    tus-server), radosgw and ceph-osd, from /proc/PID/stat before and after;
  - every UploadPart as RGW's access log saw it (beast's line: start time and latency): wall time per part,
    and how many parts were in flight over time (sampled every 50 ms between the first part's start and the
    last part's end);
  - optionally (--perf) a perf call-graph profile of tus-server, folded to bench/flamegraph.py's text breakdown.
    bench/s3/s3_profile.py --out DIR [--bytes N] [--part-size N] [--concurrency N] [--rounds N] [--perf]
"""

from __future__ import annotations

import argparse
import datetime
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

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench" / "s3"))
from s3_helpers import CephRGW  # noqa: E402
from s3_bench import start_server, stop  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# beast: 0x7f.. : 127.0.0.1 - - [07/Dec/2026:10:47:01.123 +0000] "PUT /bench/k?partNumber=3&uploadId=.. HTTP/1.1"
#   200 0 - "agent" - latency=0.061999999s
ACCESS = re.compile(r'\[(\d+/\w+/\d+:\d+:\d+:\d+\.\d+) [+-]\d+\] "PUT /[^ ]*[?&]partNumber=(\d+)[^ ]* HTTP/1.1" '
                    r'(\d+) .* latency=([\d.]+)s')


def cpu_seconds(pid: int) -> float:
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def parts_from_log(log: pathlib.Path, offset: int, key_prefix: str) -> list[dict]:
    parts = []
    with open(log, "rb") as file:
        file.seek(offset)
        for raw in file:
            line = raw.decode(errors="replace")
            if "beast:" not in line or f"/{key_prefix}" not in line:
                continue
            match = ACCESS.search(line)
            if not match:
                continue
            started = datetime.datetime.strptime(match.group(1), "%d/%b/%Y:%H:%M:%S.%f").timestamp()
            parts.append({"number": int(match.group(2)), "status": int(match.group(3)), "start": started,
                          "seconds": float(match.group(4))})
    return parts


def in_flight(parts: list[dict]) -> dict:
    if not parts:
        return {}
    begin = min(p["start"] for p in parts)
    end = max(p["start"] + p["seconds"] for p in parts)
    samples = []
    moment = begin
    while moment < end:
        samples.append(sum(1 for p in parts if p["start"] <= moment < p["start"] + p["seconds"]))
        moment += 0.05
    return {"span_s": round(end - begin, 3), "mean": round(statistics.mean(samples), 2),
            "histogram": {str(n): samples.count(n) for n in sorted(set(samples))}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=int, default=512 << 20)
    parser.add_argument("--part-size", type=int, default=8 << 20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--perf", action="store_true", help="perf record tus-server (999 Hz, call graphs)")
    parser.add_argument("--server-bin", default=str(ROOT / ".build/release/tus-server"))
    parser.add_argument("--cli-bin", default=str(ROOT / ".build/release/tus-cli"))
    parser.add_argument("--work", default="/tmp/tus-s3-profile")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()

    work = pathlib.Path(options.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = work / "payload.bin"
    with open(payload, "wb") as file:
        for _ in range(0, options.bytes, 8 << 20):
            file.write(os.urandom(min(8 << 20, options.bytes)))
        file.truncate(options.bytes)

    os.environ.setdefault("CEPH_MEMSTORE_BYTES", str(max(8 << 30, options.bytes * options.rounds * 3)))
    rgw = CephRGW(work / "ceph").start()
    rgw_log = work / "ceph" / "log" / "client.rgw.tus.log"
    rows = []
    try:
        s3 = rgw.client()
        s3.create_bucket(Bucket="bench")
        env = {**os.environ, **rgw.credentials_env()}
        transfer = TransferConfig(multipart_threshold=options.part_size, multipart_chunksize=options.part_size,
                                  max_concurrency=options.concurrency, use_threads=True)
        ceph = {"radosgw": rgw.rgw_pid, "ceph-osd": int(rgw.env["OSD_PID"])}
        for round_number in range(options.rounds):
            for kind in ("boto3", "tus-s3"):
                prefix = f"{kind}-r{round_number}"
                log_offset = rgw_log.stat().st_size
                process = perf = None
                pids = dict(ceph)
                if kind == "boto3":
                    pids["uploader"] = os.getpid()
                else:
                    spill = work / prefix
                    spill.mkdir()
                    args = ["--upload-dir", str(spill), "--store", "s3", "--s3-bucket", "bench", "--s3-endpoint",
                            rgw.endpoint, "--s3-path-style", "--s3-part-size", str(options.part_size),
                            "--s3-concurrency", str(options.concurrency), "--s3-prefix", prefix + "/"]
                    process, port = start_server(options.server_bin, args, out / "tus-server.log", env)
                    pids["tus-server"] = process.pid
                    if options.perf:
                        perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(process.pid),
                                                 "-o", str(work / "perf.data")],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(0.5)
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                children_before = os.times()
                started = time.monotonic()
                if kind == "boto3":
                    s3.upload_file(str(payload), "bench", prefix + "/data", Config=transfer)
                else:
                    subprocess.run([options.cli_bin, "upload", str(payload), f"http://127.0.0.1:{port}/files/",
                                    "--no-resume", "-q", "--timeout", "120"], check=True, timeout=900, env=env)
                seconds = time.monotonic() - started
                cpu = {name: round(cpu_seconds(pid) - before[name], 2) for name, pid in pids.items()}
                if kind == "tus-s3":
                    children = os.times()
                    cpu["tus-cli"] = round(children.children_user + children.children_system
                                           - children_before.children_user - children_before.children_system, 2)
                    if perf:
                        perf.send_signal(2)
                        perf.wait(timeout=60)
                    stop(process)
                    if perf:
                        name = f"{out}/perf-r{round_number}"
                        subprocess.run(
                            f"perf script -i {work}/perf.data 2>/dev/null | tee {work}/perf-r{round_number}.script"
                            f" | swift demangle --simplified | python3 {ROOT}/bench/flamegraph.py --title tus-server"
                            f" --text {name}.txt --svg {name}.svg", shell=True)
                time.sleep(1.5)  # RGW writes its access lines after the answer
                parts = parts_from_log(rgw_log, log_offset, prefix)
                part_seconds = sorted(p["seconds"] for p in parts if p["status"] == 200)
                row = {"run": kind, "round": round_number, "seconds": round(seconds, 3),
                       "mb_per_s": round(options.bytes / seconds / 1e6, 1), "cpu_s": cpu,
                       "parts": len(parts),
                       "part_s": {"min": part_seconds[0], "median": statistics.median(part_seconds),
                                  "max": part_seconds[-1]} if part_seconds else {},
                       "in_flight": in_flight([p for p in parts if p["status"] == 200])}
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(out / f"parts-{prefix}.jsonl", "w") as file:
                    for part in parts:
                        file.write(json.dumps(part) + "\n")
    finally:
        rgw.stop()
    (out / "profile.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
