"""``artifacts``: model downloads from a local S3 server, and a cached re-deployment.

Download: ours (:class:`actors.artifacts.ArtifactStore`: one streamed GET,
SHA-256 on the way, fsync, rename into the cache) against boto3's
``download_file``: with s3transfer's defaults (what ``aws s3 cp`` does:
concurrent ranged GETs in 10 threads), as one GET stream, and as one stream
followed by the SHA-256 a deployment needs before it may use the file. Each
runs in a fresh interpreter measured from outside (:mod:`bench._proc`):
throughput over client creation plus download, and the whole process's peak
RSS. The server is moto in server mode in its own process.

Cached re-deployment: a component whose three artifacts (a model, labels and
a ZIP) are already in the store is fetched again by a new store whose S3
endpoint has nothing listening: ours must make no request at all. Peers: an
``aws s3 sync``-style HeadObject per artifact, and re-hashing the installed
files (what checking the digest on every deployment would cost).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
import zipfile
from pathlib import Path
from typing import Any

from ._core import Case, Comparison, Contender, Goal, Limit, Metric
from ._loops import loop_kinds, run_on
from ._proc import run_python
from ._registry import Settings, Skip, benchmark

MiB = 1 << 20
BUCKET = "models"
REGION = "us-east-1"

THROUGHPUT = Metric("throughput", "B/s", "higher", "download throughput (client + GET + write)")
RSS = Metric("rss", "B", "lower", "peak RSS of the whole process")
TIME = Metric("time", "s", "lower", "time spent on artifacts")
REQUESTS = Metric("requests", "requests", "lower", "S3 requests made")

AS_FAST = Goal("download at least as fast as boto3 download_file (ratio >= 1)", 1.0)
LOWER_RSS = Goal("peak RSS well under aws s3 cp's (ratio >= 1.2)", 1.2)
NO_REQUEST = Goal("a cached re-deployment makes no request", 0.0, at_least=False)

OURS_DOWNLOAD = """
import sys, time
from pathlib import Path
from actors.artifacts import ArtifactSpec, ArtifactStore, S3Settings
from actors.kernel import run

endpoint, uri, digest, root = sys.argv[1:5]

async def main():
    start = time.perf_counter()
    settings = S3Settings(endpoint_url=endpoint, region="us-east-1", access_key_id="bench",
                          secret_access_key="bench", addressing_style="path")
    async with ArtifactStore(Path(root), settings) as store:
        await store.fetch("bench.Model", "1.0.0", [ArtifactSpec(uri, digest)])
    print(time.perf_counter() - start)

run(main)
"""

BOTO3_DOWNLOAD = """
import sys, time
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, bucket, key, path, single, verify = sys.argv[1:7]
start = time.perf_counter()
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench",
                      config=Config(s3={"addressing_style": "path"}))
# single: one GET stream, as ours does; otherwise s3transfer's defaults (aws s3 cp).
config = TransferConfig(multipart_threshold=1 << 62) if single == "1" else TransferConfig()
client.download_file(bucket, key, path, Config=config)
if verify == "1":  # what a deployment must do before using it: check the recipe's digest
    import hashlib
    with open(path, "rb") as file:
        hashlib.file_digest(file, "sha256")
print(time.perf_counter() - start)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _digest(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class MotoServer:
    """moto in server mode in its own process, stopped when this object is collected."""

    def __init__(self) -> None:
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.folder = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._finalizer = weakref.finalize(self, _stop, process, self.folder)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    self._finalizer()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)
        self.client = self.boto3_client()
        self.client.create_bucket(Bucket=BUCKET)

    def boto3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
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
        return _digest(data)


def _stop(process: subprocess.Popen[bytes], folder: Path) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(folder, ignore_errors=True)


def _download_case(server: MotoServer, size: int, settings: Settings, with_ranged: bool,
                   with_streams: bool = True) -> Case:
    key = f"large/model-{size}.bin"
    digest = server.put_large(key, size)
    uri = f"s3://{BUCKET}/{key}"

    def ours() -> dict[str, float]:
        root = Path(tempfile.mkdtemp(dir=server.folder))
        try:
            child = run_python(OURS_DOWNLOAD, server.endpoint, uri, digest, str(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return {"throughput": size / float(child.stdout.split()[-1]), "rss": child.max_rss}

    def boto3_peer(name: str, single: bool, verify: bool, label: str) -> Contender:
        def sample() -> dict[str, float]:
            target = Path(tempfile.mkdtemp(dir=server.folder)) / "model.bin"
            try:
                child = run_python(BOTO3_DOWNLOAD, server.endpoint, BUCKET, key, str(target),
                                   "1" if single else "0", "1" if verify else "0")
            finally:
                shutil.rmtree(target.parent, ignore_errors=True)
            return {"throughput": size / float(child.stdout.split()[-1]),
                    "rss": child.max_rss}

        return Contender(name, "peer", sample, label)

    contenders = [Contender("ours", "ours", ours, "ArtifactStore.fetch: one streamed GET, "
                            "SHA-256 on the way, fsync, rename")]
    comparisons: list[Comparison] = []
    if with_streams:
        contenders += [
            boto3_peer("boto3-verified", True, True, "boto3 download_file (one GET stream), "
                       "then SHA-256 of the file"),
            boto3_peer("boto3-stream", True, False, "boto3 download_file, one GET stream, "
                       "no digest check"),
        ]
        comparisons += [
            Comparison("ours", "boto3-verified", ("throughput",), AS_FAST),
            Comparison("ours", "boto3-verified", ("rss",)),
            Comparison("ours", "boto3-stream", ("throughput", "rss")),
        ]
    if with_ranged:
        contenders.append(boto3_peer("boto3", False, False, "boto3 download_file, "
                                     "s3transfer defaults = aws s3 cp (no digest check)"))
        comparisons += [Comparison("ours", "boto3", ("throughput",), AS_FAST),
                        Comparison("ours", "boto3", ("rss",), LOWER_RSS)]
    notes = ["Each sample is a fresh interpreter; the time covers client creation and the "
             "download, not interpreter start-up; RSS is the whole process's peak."]
    if not with_ranged:
        notes.append("s3transfer's concurrent ranged GETs are left out at this size: moto "
                     "copies the whole object for each ranged GET (about 8 MB/s for 1 GiB "
                     "here), which measures the server, not the client.")
    return Case(
        name=f"download {size // MiB} MiB from a local S3 server (moto)",
        metrics=(THROUGHPUT, RSS),
        contenders=tuple(contenders),
        comparisons=tuple(comparisons),
        samples=settings.pick(3, 2),
        warmup=settings.pick(1, 0),
        params={"bytes": size, "object": "multipart upload, 16 MiB parts"},
        notes=tuple(notes),
    )


def _redeploy_case(server: MotoServer, model_size: int, settings: Settings) -> Case:
    from actors.artifacts import ArtifactSpec, ArtifactStore, S3Settings, Unarchive

    model = os.urandom(MiB) * (model_size // MiB)
    labels = "\n".join(f"class {i}" for i in range(1000)).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/graph.json", b"{}" * 1000)
        archive.writestr("model/params", os.urandom(MiB))
    bundle = buffer.getvalue()
    specs = [
        ArtifactSpec(f"s3://{BUCKET}/redeploy/model.bin", server.put("redeploy/model.bin", model)),
        ArtifactSpec(
            f"s3://{BUCKET}/redeploy/labels.txt", server.put("redeploy/labels.txt", labels)
        ),
        ArtifactSpec(
            f"s3://{BUCKET}/redeploy/bundle.zip",
            server.put("redeploy/bundle.zip", bundle),
            unarchive=Unarchive.ZIP,
        ),
    ]
    root = Path(tempfile.mkdtemp(dir=server.folder))
    live = S3Settings(
        endpoint_url=server.endpoint,
        region=REGION,
        access_key_id="bench",
        secret_access_key="bench",
        addressing_style="path",
    )
    dead = S3Settings(
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        region=REGION,
        access_key_id="bench",
        secret_access_key="bench",
        attempts=1,
    )

    async def first() -> None:
        async with ArtifactStore(root, live) as store:
            await store.fetch("bench.Model", "1.0.0", specs)

    kind = loop_kinds()[0]
    run_on(kind, first)

    async def again() -> tuple[float, int]:
        start = time.perf_counter()
        async with ArtifactStore(root, dead) as store:
            fetched = await store.fetch("bench.Model", "1.0.0", specs)
        return time.perf_counter() - start, fetched.statistics.requests

    def ours() -> dict[str, float]:
        elapsed, requests = run_on(kind, again)
        return {"time": elapsed, "requests": requests}

    client = server.boto3_client()

    def head_each() -> dict[str, float]:
        start = time.perf_counter()
        for spec in specs:
            client.head_object(Bucket=BUCKET, Key=spec.uri.split("/", 3)[3])
        return {"time": time.perf_counter() - start, "requests": len(specs)}

    installed = root / "artifacts" / "bench.Model" / "1.0.0"

    def rehash() -> dict[str, float]:
        start = time.perf_counter()
        for spec in specs:
            with (installed / spec.filename).open("rb") as file:
                hashlib.file_digest(file, "sha256")
        return {"time": time.perf_counter() - start, "requests": 0}

    return Case(
        name=f"cached re-deployment: 3 artifacts ({model_size // MiB} MiB model, labels, ZIP)",
        metrics=(TIME, REQUESTS),
        contenders=(
            Contender("ours", "ours", ours, f"ArtifactStore.fetch, cache warm, on {kind}"),
            Contender(
                "head-object",
                "peer",
                head_each,
                "boto3 HeadObject per artifact (aws s3 sync's check)",
            ),
            Contender("rehash", "baseline", rehash, "SHA-256 of the installed files"),
        ),
        comparisons=(
            Comparison("ours", "head-object", ("time",)),
            Comparison("ours", "rehash", ("time",)),
        ),
        limits=(Limit("ours", "requests", NO_REQUEST),),
        samples=settings.samples,
        warmup=settings.warmup,
        params={"model_bytes": model_size},
        notes=("The S3 endpoint of ours has nothing listening: a request would fail the sample.",),
    )


@benchmark(
    "artifacts",
    "S3 model download vs boto3 download_file (throughput, peak RSS from outside), and a "
    "cached re-deployment (no request) vs HeadObject and re-hashing",
    goals=(AS_FAST, LOWER_RSS, NO_REQUEST),
)
def build(settings: Settings) -> list[Case]:
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
    except ImportError as exc:
        raise Skip("moto[server] and boto3 are needed (pip install 'moto[server]')") from exc
    server = MotoServer()
    if settings.quick:
        return [_download_case(server, 8 * MiB, settings, with_ranged=True, with_streams=False),
                _redeploy_case(server, 4 * MiB, settings)]
    return [
        _download_case(server, 256 * MiB, settings, with_ranged=True),
        _download_case(server, 1024 * MiB, settings, with_ranged=False),
        _redeploy_case(server, 256 * MiB, settings),
    ]
