"""The cgroup file system: where this process's groups are, and the few writes
that kill, freeze and list what is in one (v1 and v2)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("freezer", "pids", "memory", "cpu")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: where this process's own group is in it."""

    version: int
    controller: str  # the v1 controller, or "unified"
    own: Path  # this process's cgroup folder in it


def mounted_hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies mounted here, located at this process's own group."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        membership = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    own_v1: dict[str, str] = {}
    own_v2 = None
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            own_v2 = path
        for name in controllers.split(","):
            own_v1[name] = path
    found: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        mount_root, mount_point, fstype, options = fields[3], fields[4], rest[0], rest[2]

        def located(path: str | None, root: str = mount_root, point: str = mount_point) -> Path:
            if path is None or not path.startswith(root):
                return Path(point)  # a namespaced mount: its root is our group
            return Path(point) / path[len(root):].lstrip("/")

        if fstype == "cgroup2":
            found.append(Hierarchy(2, "unified", located(own_v2)))
        elif fstype == "cgroup":
            found.extend(Hierarchy(1, name, located(own_v1.get(name)))
                         for name in options.split(",") if name in V1_CONTROLLERS)
    return found


def write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def read_pids(folder: Path) -> list[int]:
    try:
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_all(pids: Sequence[int], sig: int) -> int:
    killed = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            killed += 1
    return killed


def freeze(folder: Path, version: int, frozen: bool) -> bool:
    try:
        if version == 2:
            write(folder / "cgroup.freeze", "1" if frozen else "0")
        else:
            write(folder / "freezer.state", "FROZEN" if frozen else "THAWED")
        return True
    except OSError:
        return False


def kill_group(folder: Path, version: int, freezer: tuple[Path, int] | None) -> int:
    """SIGKILL everything in one cgroup (frozen first, so nothing forks meanwhile)."""
    pids = read_pids(folder)
    if not pids:
        return 0
    if version == 2:
        try:
            write(folder / "cgroup.kill", "1")
            return len(pids)
        except OSError:
            pass
    if freezer is not None:
        freeze(*freezer, True)
    try:
        return kill_all(read_pids(folder), signal.SIGKILL)
    finally:
        if freezer is not None:  # the killed processes die when thawed
            freeze(*freezer, False)


def remove_tree(folder: Path) -> None:
    """rmdir a cgroup folder and its (empty) children; what is busy stays."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir():
            remove_tree(child)
    with contextlib.suppress(OSError):
        folder.rmdir()
