"""The runtime's root folder: where each room keeps its files, in one place.

    <root>/
    ├── .lock                    held by the running runtime (nucleus)
    ├── state.json               what is deployed: groups (each with the deployment in
    │                            place), versions, configuration (deploy)
    ├── deployments/
    │   ├── current.json         the deployment in progress and the state before it (deploy)
    │   └── history.json         the last deployments' records (deploy)
    ├── packages/                recipes and the artifact store (deploy, artifacts)
    ├── work/<component>/        each component's {work:path} (component host)
    ├── logs/<component>.log     each component's output, JSON lines (component)
    ├── ipc.socket               the component socket (ipc)
    ├── cli.token                the CLI's IPC token, mode 0600 (operations)
    └── mqtt-spool/              the MQTT bridge's QoS 1 spool (ipc)

Every room asks a :class:`Layout` for these paths instead of joining names to
the root itself, so the layout can be read (and changed) here. Imports nothing
of edge-actors but its errors.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import ActorsError

SOCKET_NAME = "ipc.socket"


@dataclass(frozen=True)
class Layout:
    """The paths under one runtime root (nothing is created by asking)."""

    root: Path

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def deployments(self) -> Path:
        return self.root / "deployments"

    @property
    def current_deployment(self) -> Path:
        return self.deployments / "current.json"

    @property
    def history(self) -> Path:
        return self.deployments / "history.json"

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    @property
    def recipes(self) -> Path:
        return self.packages / "recipes"

    def work(self, component: str) -> Path:
        return self.root / "work" / component

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def ipc_socket(self) -> Path:
        return self.root / SOCKET_NAME

    @property
    def cli_token(self) -> Path:
        return self.root / "cli.token"

    @property
    def mqtt_spool(self) -> Path:
        return self.root / "mqtt-spool"


class RootInUse(ActorsError, RuntimeError):
    """Another runtime holds the root folder's lock."""


def lock_root(layout: Layout) -> RootLock:
    """Hold ``<root>/.lock`` for the runtime's life: two runtimes on one root would
    corrupt each other's state and kill each other's components as orphans.

    A POSIX record lock, not flock(): it belongs to this process alone, so a child
    caught between fork and exec when the runtime is killed does not keep it. Such
    locks do not exclude the same process (and closing any descriptor of the file
    drops them), so runtimes within this process are excluded by a set first."""
    root = layout.root
    in_use = RootInUse(f"{root}: another edge-actors runtime is using this root folder; "
                       "stop it or give another --root")
    if root in _LOCKED:
        raise in_use
    handle = layout.lock.open("ab")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        handle.close()
        raise in_use from None
    _LOCKED.add(root)
    return RootLock(root, handle)


_LOCKED: set[Path] = set()


class RootLock:
    """The held lock of a root folder; :meth:`close` releases it."""

    def __init__(self, root: Path, handle: IO[bytes]) -> None:
        self.root = root
        self.handle = handle

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()
            _LOCKED.discard(self.root)
