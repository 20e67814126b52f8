"""Real servers for the fleet tests, on 127.0.0.1: SeaweedFS as the registry's S3 (an admin
identity that publishes and a read-only one for devices) and mosquitto with TLS client
certificates and the ACLs `edge-actors fleet acl` writes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench._s3servers import WEED_PORTS, free_port, weed_identity, weed_mini

from ..ipc.certs import make_pki

BUCKET = "fleet"
REGION = "us-east-1"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


class RegistryServer:
    """``weed mini`` with a bucket, an admin (publisher, controller) and a read-only device."""

    admin = Credentials("FLEETADMINKEY", "fleet-admin-secret")
    device = Credentials("FLEETDEVICEKEY", "fleet-device-secret")

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary, self.folder = binary, folder
        self.ports = {name: free_port() for name in WEED_PORTS}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"s3://{BUCKET}/registry"

    def start(self) -> None:
        identities = [
            weed_identity("admin", ["Admin", "Read", "Write", "List", "Tagging"],
                          self.admin.access_key_id, self.admin.secret_access_key),
            weed_identity("device", ["Read"], self.device.access_key_id,
                          self.device.secret_access_key)]
        log = (self.folder / "weed.log").open("ab")
        self.process = weed_mini(self.binary, self.folder, self.ports, identities,
                                 stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        client = self.client()
        while True:  # the S3 port opens before the filer behind it is ready
            try:
                client.create_bucket(Bucket=BUCKET)
                return
            except Exception as exc:
                if "BucketAlready" in str(exc):
                    return
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("weed mini did not start: "
                                       + (self.folder / "weed.log").read_text()[-2000:]
                                       ) from exc
                time.sleep(0.1)

    def client(self, who: Credentials | None = None) -> Any:
        import boto3
        from botocore.config import Config

        who = who or self.admin
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=who.access_key_id,
                            aws_secret_access_key=who.secret_access_key,
                            config=Config(s3={"addressing_style": "path"}))

    def settings(self, who: Credentials | None = None) -> Any:
        from actors.artifacts import S3Settings

        who = who or self.admin
        return S3Settings(endpoint_url=self.endpoint, region=REGION,
                          access_key_id=who.access_key_id,
                          secret_access_key=who.secret_access_key, addressing_style="path")

    def environment(self, who: Credentials | None = None) -> dict[str, str]:
        """What a process (the CLI, a device) needs to reach the registry as ``who``."""
        who = who or self.admin
        return {"AWS_ACCESS_KEY_ID": who.access_key_id,
                "AWS_SECRET_ACCESS_KEY": who.secret_access_key,
                "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_DEFAULT_REGION": REGION}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        for port in self.ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)


class Pki:
    """A test CA (tests/ipc/certs.py) and a client certificate per thing, named by its CN."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = make_pki(folder, "fleet-controller")
        self.ca = self.paths["ca"]
        self.server = (self.paths["server_cert"], self.paths["server_key"])
        self._ca_cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
        # make_pki keeps its CA key to itself: a second CA signs the things' certificates
        # and both go in the broker's CA file.
        now = dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet test devices CA")])
        self._issuer = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                        .public_key(self._key.public_key())
                        .serial_number(x509.random_serial_number())
                        .not_valid_before(now - dt.timedelta(minutes=5))
                        .not_valid_after(now + dt.timedelta(days=1))
                        .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                       critical=True)
                        .sign(self._key, hashes.SHA256()))
        self.bundle = folder / "cas.pem"
        self.bundle.write_bytes(self.ca.read_bytes()
                                + self._issuer.public_bytes(serialization.Encoding.PEM))

    def controller(self) -> tuple[Path, Path]:
        return self.paths["client_cert"], self.paths["client_key"]

    def thing(self, name: str) -> tuple[Path, Path]:
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        if cert_path.exists():
            return cert_path, key_path
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self._issuer.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                               critical=True)
                .sign(self._key, hashes.SHA256()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
