"""Each component's processes, contained and accounted for.

A component's lifecycle steps, and everything they start (a ``setsid`` daemon,
the background child of a ``run`` step that exited, a process started with
``env -i``), belong to one control group per component where the runtime may
create one:

    <runtime's own cgroup>/edge-actors-<root key>/<runtime instance>/<component>

in the cgroup v2 hierarchy (``/sys/fs/cgroup`` or the hybrid layout's
``/sys/fs/cgroup/unified``), else the v1 ``freezer`` (or ``pids``) hierarchy,
and, for a component with limits, the v1 ``memory`` and ``cpu`` ones (each group
joined is a migration under the kernel's cgroup lock: milliseconds per step).
A step's process joins them before it
executes anything of the component's (in the child, between fork and exec), so
nothing it starts can be outside. Stopping the component kills the whole
group, and the stop succeeds only when the group is empty; the group carries
``RunWith.SystemResourceLimits`` (memory in KB, cpus) and its freezer pauses and
resumes the component. The root key and the instance name the groups of an
earlier runtime on the same root (after a kill -9): the next start kills them,
whatever their environment.

Where no cgroup can be created (no cgroup file system, or not allowed), the
fallback is each step's own process group and session plus the runtime as a
child subreaper (``PR_SET_CHILD_SUBREAPER``): processes orphaned by a step are
re-parented to the runtime instead of init, and a stop kills the step's
process groups and the re-parented processes that carry the component's
marker in their environment (where the runtime cannot be a subreaper, every
process's environment is read instead: slower, as thorough). A process that
both leaves its process group and clears its environment escapes this
fallback; cgroups do not have that gap.

Steps start as ``_child.ChildProcess`` (not through the event loop's subprocess
transport: see there); who they run as is ``_users``; the cgroup file system is
``_cgroups``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
import orjson

from ..config import atomic_write
from ._cgroups import (
    V1_CONTROLLERS,
    Hierarchy,
    freeze,
    kill_all,
    kill_group,
    mounted_hierarchies,
    read_pids,
    remove_tree,
    write,
)
from ._child import ChildProcess
from ._users import (
    PosixUser,
    RunWith,
    RunWithError,
    closed_ancestor,
)

log = logging.getLogger("actors.component.processes")

Mode = Literal["auto", "cgroup2", "cgroup1", "process-group"]
CGROUP_MODES: tuple[Mode, ...] = ("auto", "cgroup2", "cgroup1", "process-group")
COMPONENT_VARIABLE = "EDGE_ACTORS_COMPONENT"
ROOT_VARIABLE = "EDGE_ACTORS_ROOT"
INSTANCE_VARIABLE = "EDGE_ACTORS_INSTANCE"
PR_SET_CHILD_SUBREAPER = 36
_EMPTY_WAIT = 5.0  # how long a stop waits for a killed group to empty


def set_child_subreaper() -> bool:
    """Make this process the subreaper of its descendants: orphans come to it, not init."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"


@dataclass
class ComponentProcesses:
    """Everything one component runs: the cgroups (or, as the fallback, the process
    groups) its steps join; kill, pause and resume act on all of it."""

    name: str
    containment: Containment
    run_with: RunWith = field(default_factory=RunWith)
    _groups: list[tuple[Hierarchy, Path]] = field(default_factory=list)
    _sessions: set[int] = field(default_factory=set)  # fallback: the steps' process groups
    _killed: set[int] = field(default_factory=set)  # SIGKILLed, maybe ours to collect
    _prepared: bool = False
    _paused: bool = False

    @property
    def kind(self) -> str:
        return "process-group" if not self._groups else (
            "cgroup2" if self._groups[0][0].version == 2 else "cgroup1")

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        for hierarchy, base in self.containment.instance_groups():
            # Each cgroup a process joins costs a migration (milliseconds under the
            # kernel's cgroup lock): the v1 limit controllers only when limited.
            if (hierarchy.controller == "memory" and self.run_with.memory_kb is None) or \
                    (hierarchy.controller == "cpu" and self.run_with.cpus is None):
                continue
            folder = base / _safe(self.name)
            try:
                folder.mkdir(exist_ok=True)
            except OSError as exc:
                if self._groups:  # a limit controller: the limit is not applied
                    log.warning("component %s: cannot create the cgroup %s (%s)",
                                self.name, folder, exc.strerror)
                    continue
                log.warning("component %s: cannot create the cgroup %s (%s); using the "
                            "process-group fallback", self.name, folder, exc.strerror)
                return
            self._groups.append((hierarchy, folder))
        self._limit()

    def _limit(self) -> None:
        memory, cpus = self.run_with.memory_kb, self.run_with.cpus
        if memory is None and cpus is None:
            return
        applied = set()
        for hierarchy, folder in self._groups:
            try:
                if memory is not None and hierarchy.controller in ("memory", "unified") \
                        and (folder / ("memory.max" if hierarchy.version == 2
                                       else "memory.limit_in_bytes")).exists():
                    if hierarchy.version == 2:
                        write(folder / "memory.max", str(memory * 1024))
                    else:
                        write(folder / "memory.limit_in_bytes", str(memory * 1024))
                    applied.add("memory")
                if cpus is not None and hierarchy.controller in ("cpu", "unified") \
                        and (folder / ("cpu.max" if hierarchy.version == 2
                                       else "cpu.cfs_quota_us")).exists():
                    period = 100_000
                    if hierarchy.version == 2:
                        write(folder / "cpu.max", f"{int(cpus * period)} {period}")
                    else:
                        write(folder / "cpu.cfs_period_us", str(period))
                        write(folder / "cpu.cfs_quota_us", str(int(cpus * period)))
                    applied.add("cpus")
            except OSError as exc:
                log.warning("component %s: cannot set its resource limits in %s: %s",
                            self.name, folder, exc.strerror)
        wanted = {k for k, v in (("memory", memory), ("cpus", cpus)) if v is not None}
        if wanted - applied:
            log.warning("component %s: SystemResourceLimits %s not applied: no %s cgroup "
                        "controller is available to the runtime here", self.name,
                        ", ".join(sorted(wanted - applied)), " or ".join(sorted(wanted - applied)))

    @property
    def groups(self) -> list[Path]:
        """The cgroup folders the component's processes are in (none in the fallback)."""
        self._prepare()
        return [folder for _, folder in self._groups]

    def spawn(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
              user: PosixUser | None = None) -> ChildProcess:
        """Start a step's process in the component's groups, as ``user`` when given."""
        self._prepare()
        env = {**env, COMPONENT_VARIABLE: self.name}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        joins: list[int] = []
        try:
            # Opened here, by the runtime: the child writes itself into them between
            # fork and exec, after it dropped to the component's user (a write to
            # cgroup.procs is checked against the opener's credentials).
            for _, folder in self._groups:
                joins.append(os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))

            def join() -> None:
                for fd in joins:
                    os.write(fd, b"0")

            popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                cwd=cwd, env=dict(env), close_fds=True, start_new_session=True,
                preexec_fn=join if joins else None,
                user=user.uid if user else None, group=user.gid if user else None,
                extra_groups=list(user.groups) if user else None)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
            for fd in joins:
                os.close(fd)
        self._sessions.add(popen.pid)
        return ChildProcess(popen, out_r, err_r)

    def pids(self) -> list[int]:
        """Every live process of the component now."""
        self._prepare()
        if self._groups:
            found: set[int] = set()
            for _, folder in self._groups:
                found.update(read_pids(folder))
            return sorted(found)
        return sorted(self._fallback_pids())

    def _fallback_pids(self) -> set[int]:
        found = set()
        marker = f"{COMPONENT_VARIABLE}={self.name}".encode()
        root = f"{ROOT_VARIABLE}={self.containment.root}".encode()
        me = os.getpid()
        for pid, info in _processes():
            if info.state == "Z":
                # Dead, only not yet collected: an orphan of one of the steps' groups,
                # re-parented to the runtime (the subreaper), is the runtime's to collect.
                if info.ppid == me and pid not in self._sessions and (
                        info.pgid in self._sessions or info.sid in self._sessions):
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                continue
            if info.pgid in self._sessions or info.sid in self._sessions:
                found.add(pid)
            elif (info.ppid == me or not self.containment.subreaper) \
                    and pid not in self._sessions:
                # Re-parented to the runtime (the subreaper), or to whichever process
                # adopts orphans where the runtime cannot be a subreaper (QEMU's user
                # mode refuses the prctl): the environment tells.
                environ = info.environ()
                if marker in environ and root in environ:
                    found.add(pid)
        return found

    def signal(self, sig: int) -> int:
        """Send ``sig`` to every process of the component; how many got it."""
        return kill_all(self.pids(), sig)

    async def kill(self, grace: float = 0.0) -> bool:
        """End everything of the component: SIGTERM, up to ``grace`` seconds, then
        SIGKILL (frozen first, so nothing forks meanwhile). True when nothing is left."""
        if self._paused:
            self.resume()  # a frozen process never handles SIGTERM
        if grace > 0 and self.signal(signal.SIGTERM):
            # Polled: a cgroup's emptiness has no event under v1.
            deadline = time.monotonic() + grace
            for _ in iter(lambda: bool(self.pids()) and time.monotonic() < deadline, False):
                await anyio.sleep(0.02)
        deadline = time.monotonic() + _EMPTY_WAIT
        while True:
            left = self.pids()
            if not left:
                self._reap()
                if not self._groups:  # the process groups are gone: their ids may be reused
                    self._sessions.clear()
                return True
            if time.monotonic() > deadline:
                log.error("component %s: processes %s are still running after SIGKILL",
                          self.name, left)
                return False
            self._kill_now(left)
            await anyio.sleep(0.01)
            self._reap()

    def kill_nowait(self) -> int:
        """SIGKILL everything of the component now, without waiting for it to end."""
        left = self.pids()
        if left:
            self._kill_now(left)
        return len(left)

    def _kill_now(self, left: list[int]) -> None:
        self._killed.update(left)
        if not self._groups:
            kill_all(left, signal.SIGKILL)
            return
        freezer = self._freezer()
        for hierarchy, folder in self._groups:
            kill_group(folder, hierarchy.version, freezer)

    def _reap(self) -> None:
        """Collect the killed processes that were re-parented to the runtime (the
        subreaper); the steps' own processes are their ChildProcess's to collect, and
        no other child of the runtime is touched."""
        me = os.getpid()
        for pid in list(self._killed):
            try:
                info = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                self._killed.discard(pid)
                continue
            fields = info[info.rfind(")") + 2:].split()
            if int(fields[1]) == me and fields[0] != "Z":
                continue  # still dying: next time
            if int(fields[1]) == me and pid not in self._sessions:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            self._killed.discard(pid)  # collected, or init's or a ChildProcess's to collect

    def _freezer(self) -> tuple[Path, int] | None:
        for hierarchy, folder in self._groups:
            if hierarchy.version == 2 and (folder / "cgroup.freeze").exists():
                return folder, 2
            if hierarchy.controller == "freezer":
                return folder, 1
        return None

    def pause(self) -> None:
        """Freeze every process of the component (PauseComponent); in the fallback,
        SIGSTOP them."""
        self._prepare()
        freezer = self._freezer()
        if freezer is None or not freeze(*freezer, True):
            self.signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Thaw the component (ResumeComponent); in the fallback, SIGCONT."""
        freezer = self._freezer()
        if freezer is None or not freeze(*freezer, False):
            self.signal(signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def remove(self) -> None:
        """Remove the component's (empty) cgroups."""
        for _, folder in self._groups:
            remove_tree(folder)
        self._groups.clear()
        self._prepared = False


@dataclass(frozen=True)
class _Info:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str

    def environ(self) -> bytes:
        try:
            return b"\0" + Path(f"/proc/{self.pid}/environ").read_bytes() + b"\0"
        except OSError:
            return b""


def _processes() -> Iterator[tuple[int, _Info]]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces or ')'
        fields = stat[stat.rfind(")") + 2:].split()
        pid = int(entry.name)
        yield pid, _Info(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0])


class Containment:
    """The runtime's side: where its components' cgroups are, the runtime-wide
    RunWith default, and the sweep of an earlier runtime's leftovers."""

    def __init__(self, root: Path, instance: str, mode: Mode = "auto",
                 default: RunWith | None = None) -> None:
        if mode not in CGROUP_MODES:
            raise ValueError(f"containment must be one of {', '.join(CGROUP_MODES)}, "
                             f"not {mode!r}")
        self.root = Path(root).absolute()
        self.instance = instance
        self.mode = mode
        self.default = default or RunWith()
        self.key = "edge-actors-" + hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        self._hierarchies = self._choose(mode)
        self._created = False
        self.components: dict[str, ComponentProcesses] = {}
        self.subreaper = False
        if not self._hierarchies:
            self.subreaper = set_child_subreaper()
        self._settings_file = self.root / "run-with.json"
        self.settings: dict[str, RunWith] = self._load_settings()
        _REGISTRY[(self.root, instance)] = self

    def _load_settings(self) -> dict[str, RunWith]:
        try:
            raw = orjson.loads(self._settings_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("%s: unreadable (%s); components run with the default RunWith",
                        self._settings_file, exc)
            return {}
        if not isinstance(raw, dict):
            log.warning("%s: not a mapping of component names; components run with the "
                        "default RunWith", self._settings_file)
            return {}
        found = {}
        for name, value in raw.items():
            try:
                found[name] = RunWith.parse(value, f"{self._settings_file}: {name}")
            except RunWithError as exc:
                log.warning("%s", exc)
        return found

    def set_run_with(self, run_with: Mapping[str, Mapping[str, Any]]) -> None:
        """A deployment's ``componentToRunWithInfo`` (name -> ``posixUser``,
        ``systemResourceLimits``), kept under the root for later starts. Raises
        RunWithError naming the component when one is malformed."""
        if not run_with:
            return
        if not isinstance(run_with, Mapping):
            raise RunWithError("componentToRunWithInfo must map component names to "
                               "{posixUser, systemResourceLimits}")
        parsed = {name: RunWith.parse(value, f"component {name}: runWith")
                  for name, value in run_with.items()}
        for name, setting in parsed.items():
            if setting.posix_user and os.geteuid() == 0:
                PosixUser.resolve(setting.posix_user, f"component {name}: runWith.posixUser")
        self.settings.update(parsed)
        atomic_write(self._settings_file, orjson.dumps(
            {name: setting.to_json() for name, setting in self.settings.items()}))

    @property
    def kind(self) -> str:
        if not self._hierarchies:
            return "process-group"
        return "cgroup2" if self._hierarchies[0].version == 2 else "cgroup1"

    def _choose(self, mode: Mode) -> list[Hierarchy]:
        if mode == "process-group":
            return []
        found = mounted_hierarchies()
        v2 = [h for h in found if h.version == 2]
        v1 = [h for h in found if h.version == 1]
        if mode == "cgroup1" or (mode == "auto" and not v2):
            # membership: the freezer (it also pauses), else pids; memory and cpu
            # carry the limits
            v1.sort(key=lambda h: V1_CONTROLLERS.index(h.controller))
            chosen = v1[:1] + [h for h in v1[1:] if h.controller in ("memory", "cpu")]
        else:
            # v2 for membership, kill and freeze; in the hybrid layout the v1
            # memory and cpu controllers carry the limits.
            chosen = v2[:1] + [h for h in v1 if h.controller in ("memory", "cpu")]
        usable = [h for h in chosen if os.access(h.own, os.W_OK)]
        if not usable or (usable[0].version == 1 and usable[0].controller
                          not in ("freezer", "pids")):
            usable = []  # no hierarchy to hold the membership
        if mode in ("cgroup1", "cgroup2") and not usable:
            raise ValueError(f"containment {mode}: no {mode} hierarchy the runtime may "
                             "create groups in here; use auto or process-group")
        return usable

    def instance_groups(self) -> list[tuple[Hierarchy, Path]]:
        """This runtime's folder in each hierarchy (created on first use)."""
        made = []
        for hierarchy in self._hierarchies:
            folder = hierarchy.own / self.key / self.instance
            try:
                folder.mkdir(parents=True, exist_ok=True)
                if hierarchy.version == 2:
                    self._delegate(hierarchy.own / self.key, folder)
            except OSError as exc:
                if hierarchy is self._hierarchies[0]:
                    log.warning("cannot create cgroup %s (%s): components use the "
                                "process-group fallback", folder, exc.strerror)
                    return []
                continue
            made.append((hierarchy, folder))
        self._created = True
        return made

    @staticmethod
    def _delegate(*folders: Path) -> None:
        # v2 limits need the controllers enabled from the top down; a group with
        # processes of its own cannot pass them on (the runtime's own group, unless
        # it is the root): then the limits are not applied, and a warning says so.
        for folder in folders:
            try:
                available = (folder.parent / "cgroup.subtree_control").read_text().split()
                if available:
                    write(folder / "cgroup.subtree_control",
                           " ".join(f"+{c}" for c in available if c in ("memory", "cpu")))
            except OSError:
                pass

    def component(self, name: str, run_with: RunWith | None = None) -> ComponentProcesses:
        """The component's processes (one object per component name for this runtime),
        with its RunWith: ``run_with``, else the deployment's, over the default."""
        setting = (run_with or self.settings.get(name) or RunWith()).over(self.default)
        found = self.components.get(name)
        if found is None or found.run_with != setting:
            if found is not None and not found.pids():
                found.remove()
            found = ComponentProcesses(name, self, setting)
            self.components[name] = found
        return found

    async def stop_component(self, name: str) -> bool:
        """End what is left of a component that is stopped or removed (what a FINISHED
        component's run step left running); True when nothing is left."""
        processes = self.components.get(name)
        if processes is None:
            return True
        clean = await processes.kill()
        if clean:
            processes.remove()
            del self.components[name]
        return clean

    def pause(self, name: str) -> None:
        """Freeze a running component's processes (PauseComponent); LookupError when
        it has none here."""
        self._running(name).pause()

    def resume(self, name: str) -> None:
        """Thaw a paused component (ResumeComponent); LookupError when it has no
        processes here."""
        self._running(name).resume()

    def _running(self, name: str) -> ComponentProcesses:
        processes = self.components.get(name)
        if processes is None or not processes.pids():
            raise LookupError(f"component {name} has no running processes here")
        return processes

    def posix_user(self, run_with: RunWith, where: str) -> PosixUser | None:
        """Who a step without RequiresPrivilege runs as: the component's posixUser or
        the runtime's default; None (the runtime's own user) when not running as
        root or when that user is root."""
        if os.geteuid() != 0:
            return None
        spec = run_with.posix_user or self.default.posix_user
        if spec is None:
            return None
        user = PosixUser.resolve(spec, where)
        return None if user.uid == 0 and user.gid == 0 else user

    def protect(self) -> None:
        """When components run as other users: the runtime's own files (state, tokens,
        deployments, logs) are the runtime's alone; the root stays traversable (a
        component reaches its work folder, the artifacts and the IPC socket, whose
        connections authenticate with the component's token)."""
        if os.geteuid() != 0 or not self.default.posix_user:
            return
        try:
            if PosixUser.resolve(self.default.posix_user).uid == 0:
                return  # components run as root: nothing to keep from them
        except RunWithError:
            pass  # each component's start names it
        for path, mode in ((self.root, 0o755), (self.root / "work", 0o755),
                           (self.root / "deployments", 0o700), (self.root / "logs", 0o700)):
            with contextlib.suppress(FileNotFoundError):
                if path in (self.root / "logs", self.root / "work"):
                    path.mkdir(exist_ok=True)
                os.chmod(path, mode)
        for name in ("cli.token", "state.json", "run-with.json"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self.root / name, 0o600)
        interpreter = Path(os.path.realpath(sys.executable))
        closed = closed_ancestor(interpreter)
        if closed is not None or not interpreter.stat().st_mode & stat.S_IXOTH:
            log.warning("the runtime's interpreter %s is closed to other users (at %s): "
                        "`python3` in a recipe run as %s finds the system's python3, without "
                        "the runtime's packages; install the runtime where other users may "
                        "run it", interpreter, closed or interpreter, self.default.posix_user)
        closed = closed_ancestor(self.root)
        if closed is not None:
            log.warning("%s is closed to other users (mode %o): components running as %s "
                        "cannot reach their work folders and artifacts under %s; open it "
                        "(chmod o+x) or choose another --root", closed,
                        stat.S_IMODE(closed.stat().st_mode), self.default.posix_user, self.root)

    def open_socket(self, path: Path) -> None:
        """Let components running as other users connect to the IPC socket (each
        connection still authenticates with its component's token)."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_mode & 0o777 != 0o666:
                os.chmod(path, 0o666)

    @staticmethod
    def own_work(folder: Path, user: PosixUser) -> None:
        """A component's work folder: its user's, mode 0700."""
        info = os.stat(folder)
        if (info.st_uid, info.st_gid) != (user.uid, user.gid):
            # What it holds too: files an earlier version wrote as another user.
            for base, folders, files in os.walk(folder):
                for name in folders + files:
                    os.lchown(os.path.join(base, name), user.uid, user.gid)
            os.chown(folder, user.uid, user.gid)
        if info.st_mode & 0o777 != 0o700:
            os.chmod(folder, 0o700)

    @staticmethod
    def own_artifacts(folders: Sequence[Path], user: PosixUser) -> None:
        """A component version's artifacts (and what was unarchived of them) are its
        user's, their modes kept: Greengrass's ``Permission`` ``OWNER`` means the user
        that runs the component, so a file readable by its owner is readable by it."""
        for folder in folders:
            if not folder.is_dir() or os.stat(folder).st_uid == user.uid:
                continue
            for base, subfolders, files in os.walk(folder):
                for name in files:
                    path = os.path.join(base, name)
                    info = os.lstat(path)
                    if info.st_nlink > 1 and not stat.S_ISLNK(info.st_mode):
                        # A file the artifact cache shares with other components: this
                        # component's user gets a copy of its own, not the shared inode.
                        private = f"{path}.{os.getpid()}.own"
                        shutil.copy2(path, private)
                        os.replace(private, path)
                    os.lchown(path, user.uid, user.gid)
                for name in subfolders:
                    os.lchown(os.path.join(base, name), user.uid, user.gid)
            os.chown(folder, user.uid, user.gid)

    def sweep(self) -> int:
        """Kill what an earlier runtime on this root left in its cgroups; how many."""
        killed = 0
        swept: list[Path] = []
        for hierarchy in self._hierarchies[:1]:  # every process is in the first one
            base = hierarchy.own / self.key
            if not base.is_dir():
                continue
            for instance in base.iterdir():
                if not instance.is_dir() or instance.name == self.instance:
                    continue
                for folder in [instance, *(p for p in instance.iterdir() if p.is_dir())]:
                    swept.append(folder)
                    killed += kill_group(folder, hierarchy.version,
                                         (folder, 1) if hierarchy.controller == "freezer"
                                         else None)
        # The killed die asynchronously; a group still holding one cannot be removed.
        deadline = time.monotonic() + 2.0
        while killed and any(read_pids(f) for f in swept) and time.monotonic() < deadline:
            time.sleep(0.01)
        for hierarchy in self._hierarchies:
            base = hierarchy.own / self.key
            if base.is_dir():
                for instance in base.iterdir():
                    if instance.is_dir() and instance.name != self.instance:
                        remove_tree(instance)
        return killed

    async def close(self) -> bool:
        """At the runtime's stop: kill what is left of any component, remove the
        cgroups. True when nothing was left running."""
        clean = True
        self.sweep()  # an earlier instance's groups the start could not remove yet
        for processes in list(self.components.values()):
            if processes.pids():
                clean = False
                await processes.kill()
            processes.remove()
        for hierarchy in self._hierarchies:
            remove_tree(hierarchy.own / self.key / self.instance)
            with contextlib.suppress(OSError):
                (hierarchy.own / self.key).rmdir()
        if _REGISTRY.get((self.root, self.instance)) is self:
            del _REGISTRY[(self.root, self.instance)]
        return clean


_REGISTRY: dict[tuple[Path, str], Containment] = {}


def runtime_containment(root: Path, instance: str, mode: str = "auto",
                        run_with: RunWith | None = None) -> Containment:
    """The containment of a runtime's components: ``run_with`` is the runtime-wide
    RunWith default (Greengrass's runWithDefault); as root, components run as
    ``ggc_user:ggc_group`` unless it names another posixUser (or
    ``$EDGE_ACTORS_COMPONENT_USER`` does)."""
    from ._users import default_posix_user

    default = run_with or RunWith()
    if default.posix_user is None:
        default = RunWith(default_posix_user(), default.memory_kb, default.cpus)
    return Containment(root, instance, mode=mode, default=default)  # type: ignore[arg-type]


def prepare_component_user(containment: Containment) -> None:
    """The default component user exists (Greengrass's installer creates
    ggc_user:ggc_group), and the runtime's own files are not theirs to read."""
    from ._users import DEFAULT_POSIX_USER, RunWithError, create_default_user

    spec = containment.default.posix_user
    if spec == DEFAULT_POSIX_USER:
        try:
            create_default_user(spec)
        except RunWithError as exc:
            log.error("%s", exc)  # each component's start then says so too
    containment.protect()


def containment_for(root: Path, instance: str | None = None) -> Containment:
    """The runtime's Containment for ``root`` (one made with defaults if none was)."""
    root = Path(root).absolute()
    found = _REGISTRY.get((root, instance or "standalone"))
    if found is None:
        found = Containment(root, instance or "standalone")
    return found


