"""Who a component's steps run as, and with what limits: Greengrass's ``RunWith``
(``posixUser``, ``systemResourceLimits``) and the runtime-wide default user."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("actors.component.processes")

DEFAULT_POSIX_USER = "ggc_user:ggc_group"


class RunWithError(ValueError):
    """A RunWith setting is malformed or names a user or group that does not exist."""


@dataclass(frozen=True)
class RunWith:
    """Greengrass's ``RunWith``: the POSIX user (``user[:group]``) and
    ``SystemResourceLimits`` (``memory`` in KB, ``cpus`` as a number of cores)."""

    posix_user: str | None = None
    memory_kb: int | None = None
    cpus: float | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> RunWith:
        """From a recipe's or deployment's ``RunWith`` mapping (keys in either case)."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise RunWithError(f"{where}: RunWith must be a mapping with posixUser and/or "
                               f"SystemResourceLimits, not {type(raw).__name__}")
        keys = {str(k).lower(): v for k, v in raw.items()}
        user = keys.get("posixuser")
        if user is not None and (not isinstance(user, str) or not user.strip()):
            raise RunWithError(f"{where}: RunWith.posixUser must be 'user' or 'user:group'")
        limits = keys.get("systemresourcelimits") or {}
        if not isinstance(limits, Mapping):
            raise RunWithError(f"{where}: RunWith.SystemResourceLimits must be a mapping "
                               "with memory (KB) and/or cpus")
        limits = {str(k).lower(): v for k, v in limits.items()}
        memory, cpus = limits.get("memory"), limits.get("cpus")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)
                                   or memory <= 0):
            raise RunWithError(f"{where}: RunWith.SystemResourceLimits.memory must be a "
                               f"positive number of kilobytes, not {memory!r}")
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int | float)
                                 or cpus <= 0):
            raise RunWithError(f"{where}: RunWith.SystemResourceLimits.cpus must be a "
                               f"positive number of cores, not {cpus!r}")
        return cls(user.strip() if user else None, memory, float(cpus) if cpus else None)

    def to_json(self) -> dict[str, Any]:
        limits: dict[str, Any] = {}
        if self.memory_kb is not None:
            limits["memory"] = self.memory_kb
        if self.cpus is not None:
            limits["cpus"] = self.cpus
        found: dict[str, Any] = {"systemResourceLimits": limits} if limits else {}
        if self.posix_user:
            found["posixUser"] = self.posix_user
        return found

    def over(self, default: RunWith) -> RunWith:
        """This setting, with what it leaves out taken from ``default``."""
        return RunWith(self.posix_user or default.posix_user,
                       self.memory_kb or default.memory_kb, self.cpus or default.cpus)


@dataclass(frozen=True)
class PosixUser:
    """A resolved ``user[:group]``: what a step's process runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"

    @classmethod
    def resolve(cls, spec: str, where: str = "RunWith.posixUser") -> PosixUser:
        """Raises RunWithError naming ``where`` when the user or group does not exist.
        Every step of a component resolves its user: an answer is kept while
        /etc/passwd and /etc/group are unchanged (reading /etc/group for the
        supplementary groups was a fifth of a step's start-up)."""
        stamp = _user_database_stamp()
        known = _resolved.get(spec)
        if known is not None and known[0] == stamp:
            return known[1]
        resolved = cls._resolve(spec, where)
        if len(_resolved) > 64:
            _resolved.clear()
        _resolved[spec] = (stamp, resolved)
        return resolved

    @classmethod
    def _resolve(cls, spec: str, where: str) -> PosixUser:
        user, _, group = spec.partition(":")
        try:
            entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise RunWithError(
                f"{where}: user {user!r} does not exist; create it (useradd --system "
                f"{user}) or name another user") from None
        gid = entry.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
            except KeyError:
                raise RunWithError(
                    f"{where}: group {group!r} does not exist; create it (groupadd --system "
                    f"{group}) or name another group") from None
        groups = tuple(sorted({gid, *os.getgrouplist(entry.pw_name, gid)}))
        return cls(entry.pw_name, entry.pw_uid, gid, groups, entry.pw_dir or "/")


_resolved: dict[str, tuple[tuple[int, ...], PosixUser]] = {}


def _user_database_stamp() -> tuple[int, ...]:
    stamp: list[int] = []
    for path in ("/etc/passwd", "/etc/group"):
        try:
            info = os.stat(path)
        except OSError:
            stamp += [-1, -1]
        else:
            stamp += [info.st_mtime_ns, info.st_ino]
    return tuple(stamp)


USER_VARIABLE = "EDGE_ACTORS_COMPONENT_USER"


def default_posix_user() -> str | None:
    """The runtime-wide default user of components: ``$EDGE_ACTORS_COMPONENT_USER``,
    else ``ggc_user:ggc_group`` when the runtime runs as root; None (the runtime's own
    user) otherwise."""
    if os.geteuid() != 0:
        return None
    return os.environ.get(USER_VARIABLE) or DEFAULT_POSIX_USER


def create_default_user(spec: str = DEFAULT_POSIX_USER) -> PosixUser:
    """Create the ``user:group`` components run as (a system user without a login
    shell or home), as Greengrass's installer does for ggc_user:ggc_group; what
    exists is kept. Needs root; raises RunWithError when useradd/groupadd fail."""
    user, _, group = spec.partition(":")
    group = group or user
    commands = []
    try:
        grp.getgrnam(group)
    except KeyError:
        commands.append(["groupadd", "--system", group])
    try:
        pwd.getpwnam(user)
    except KeyError:
        commands.append(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                         "--shell", "/usr/sbin/nologin", "--gid", group, user])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise RunWithError(f"cannot create the component user {spec}: {' '.join(command)}: "
                               f"{done.stderr.strip() or done.returncode}; create it yourself "
                               "or give another user (--component-default-user)")
        log.warning("created %s for components: %s", spec, " ".join(command))
    return PosixUser.resolve(spec)


def closed_ancestor(folder: Path) -> Path | None:
    """The first folder above ``folder`` that other users cannot pass through."""
    for parent in reversed(folder.parents):
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return parent
        except OSError:
            return parent
    return None
