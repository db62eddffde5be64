"""A real Ceph RADOS Gateway for the S3 store's tests (scripts/ceph-rgw.sh), and boto3 views of the bucket.

The gateway runs once per session (it takes a few seconds to start); each test gets its own bucket. If it cannot
start, the fixture fails loudly: nothing is skipped.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess

import boto3
from botocore.config import Config

from tus_helpers import repo_root

PART = 5 * 1024 * 1024  # the part size the tests run with (S3's minimum)


class CephRGW:
    def __init__(self, directory: pathlib.Path):
        self.directory = pathlib.Path(directory)
        self.env: dict[str, str] = {}

    def start(self) -> "CephRGW":
        script = repo_root() / "scripts" / "ceph-rgw.sh"
        result = subprocess.run(
            ["bash", str(script), "start", str(self.directory)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"Ceph RGW did not start:\n{result.stdout}\n{result.stderr}")
        for line in (self.directory / "env").read_text().splitlines():
            name, _, value = line.partition("=")
            self.env[name] = value
        return self

    def stop(self) -> None:
        script = repo_root() / "scripts" / "ceph-rgw.sh"
        subprocess.run(["bash", str(script), "stop", str(self.directory)], timeout=60, check=False)

    @property
    def endpoint(self) -> str:
        return self.env["RGW_ENDPOINT"]

    @property
    def rgw_pid(self) -> int:
        return int(self.env["RGW_PID"])

    def pause(self) -> None:
        os.kill(self.rgw_pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.rgw_pid, signal.SIGCONT)

    def credentials_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.env["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": self.env["AWS_SECRET_ACCESS_KEY"]}

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=5,
                          read_timeout=20))

    def server_args(self, bucket: str, *extra: str) -> list[str]:
        return ["--store", "s3", "--s3-bucket", bucket, "--s3-endpoint", self.endpoint, "--s3-path-style",
                "--s3-part-size", str(PART), *extra]


def upload_id(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def keys(s3, bucket: str, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = item["Size"]
    return found


def multipart_uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def get_object(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def durable_prefix(s3, bucket: str, ident: str, data: bytes) -> int:
    """How many leading bytes of `data` the bucket really holds for upload `ident`: the finished object, or the
    contiguous full parts of its multipart upload plus the incomplete-part object that follows them. Checks the
    incomplete-part object's bytes against `data` (parts cannot be read before completion; their sizes can)."""
    objects = keys(s3, bucket, ident)
    if ident in objects:
        stored = get_object(s3, bucket, ident)
        assert data.startswith(stored)
        return len(stored)
    uploads = [u for u in multipart_uploads(s3, bucket) if u["Key"] == ident]
    assert len(uploads) == 1, uploads
    parts = s3.list_parts(Bucket=bucket, Key=ident, UploadId=uploads[0]["UploadId"]).get("Parts", [])
    sizes = {part["PartNumber"]: part["Size"] for part in parts}
    count = 0
    while sizes.get(count + 1) == PART:
        count += 1
    held = count * PART
    tail_key = f"{ident}.part.{count + 1}"
    if tail_key in objects:
        tail = get_object(s3, bucket, tail_key)
        assert tail == data[held:held + len(tail)], "the incomplete-part object holds the upload's bytes"
        held += len(tail)
    return held
