"""ComponentActor: one Greengrass component's lifecycle, run by an actor.

``on_start`` runs ``install`` and then ``startup`` (the component is RUNNING
when it exits 0) or starts ``run`` in the actor's own task group (RUNNING
while the process lives). A ``run`` process that exits 0 makes the component
FINISHED; a non-zero exit, a failed step or a timeout makes it ERRORED and
crashes the actor, so its supervisor restarts it (after ``recover``).
Stopping runs ``shutdown`` and then ends the process: SIGTERM, a grace period,
SIGKILL.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson
from anyio.streams.text import TextReceiveStream

from ..config import pointer_get
from ..kernel import Actor, ActorsError, Later
from ..recipe import Recipe, RecipeError, Step
from ._child import ChildProcess
from ._context import (
    IN_PROCESS,
    SERVE_GRACE,
    ComponentContext,
    EntryPoint,
    Publisher,
    load_entry_point,
)
from ._environment import component_environment
from ._processes import (
    INSTANCE_VARIABLE,
    ROOT_VARIABLE,
    ComponentProcesses,
    containment_for,
)

log = logging.getLogger("actors.component")

DEFAULT_STEP_TIMEOUT = {"bootstrap": 120.0, "install": 120.0, "startup": 120.0,
                        "shutdown": 15.0, "recover": 60.0}
STOP_GRACE = 5.0


class State(enum.StrEnum):
    NEW = "NEW"
    INSTALLED = "INSTALLED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    FINISHED = "FINISHED"
    ERRORED = "ERRORED"
    BROKEN = "BROKEN"


@dataclass(frozen=True)
class Reconfigure:
    """A new configuration for a running component; the reply says whether it took
    it in place (True) or needs a restart (False)."""

    configuration: Mapping[str, Any]


class ComponentNotServing(ActorsError, LookupError):
    """A request was sent to a component that does not serve requests (not running,
    not in process, or its entry point never called ``ctx.serve``)."""


class ComponentError(ActorsError, RuntimeError):
    """A lifecycle step failed: names the component, the step and the exit code or timeout."""


@dataclass(frozen=True)
class ComponentPaths:
    """Where a component's files are: ``{artifacts:path}``, ``{work:path}``,
    ``{kernel:rootPath}``, and its log file (JSON lines, as Greengrass writes them)."""

    root: Path
    artifacts: Path
    work: Path
    decompressed: Path  # {artifacts:decompressedPath}
    log: Path


class ErrorTracker:
    """Greengrass's BROKEN rule: ``limit`` errors within ``reset_time`` seconds.

    Lives outside the actor so the count survives restarts; a new deployment
    clears it."""

    def __init__(self, limit: int = 3, reset_time: float = 3600.0) -> None:
        self.limit = limit
        self.reset_time = reset_time
        self._errors: dict[str, list[float]] = {}

    def record(self, name: str) -> bool:
        """Count an error; True when the component is now BROKEN."""
        now = time.monotonic()
        recent = [t for t in self._errors.get(name, []) if now - t < self.reset_time]
        recent.append(now)
        self._errors[name] = recent
        return len(recent) >= self.limit

    def clear(self, name: str) -> None:
        self._errors.pop(name, None)


_VARIABLE = re.compile(
    r"\{(?:([A-Za-z0-9._-]+):)?(artifacts|work|configuration|kernel|iot):([^}]*)\}")


def interpolate(text: str, recipe: Recipe, config: Mapping[str, Any], paths: ComponentPaths,
                thing_name: str,
                dependencies: Mapping[str, tuple[ComponentPaths, Mapping[str, Any]]] | None = None
                ) -> str:
    """Replace the recipe variables Greengrass defines; unknown ones are left as they are.

    ``{Name:artifacts:path}``-style variables of direct dependencies resolve
    through ``dependencies`` (name -> its paths and configuration)."""

    def value(match: re.Match[str]) -> str:
        other, namespace, key = match.groups()
        own_paths, own_config = paths, config
        if other is not None and other != recipe.name:
            if not dependencies or other not in dependencies:
                return match.group(0)  # not a direct dependency: left as written
            own_paths, own_config = dependencies[other]
        return _variable(namespace, key, own_paths, own_config, thing_name) or match.group(0)

    return _VARIABLE.sub(value, text)


def _variable(namespace: str, key: str, paths: ComponentPaths, config: Mapping[str, Any],
              thing_name: str) -> str | None:
    if namespace == "artifacts":
        if key == "path":
            return str(paths.artifacts)
        if key == "decompressedPath":
            return str(paths.decompressed)
    elif namespace == "work" and key == "path":
        return str(paths.work)
    elif namespace == "kernel" and key == "rootPath":
        return str(paths.root)
    elif namespace == "iot" and key == "thingName":
        return thing_name
    elif namespace == "configuration":
        found = pointer_get(config, key)
        if found is None:
            return ""
        if isinstance(found, str):
            return found
        return orjson.dumps(found).decode()
    return None


def kill_orphans(root: Path, instance: str) -> int:
    """Kill every process an earlier runtime on ``root`` left behind (after kill -9).

    Where components run in cgroups, everything in an earlier instance's groups
    under this root is killed, whatever its environment (``env -i`` included).
    Each lifecycle process also carries ``EDGE_ACTORS_ROOT=<root>`` and the id of
    the runtime instance that started it in its environment, which its children
    inherit: that finds the rest (the process-group fallback, and a child caught
    between fork and exec). The runtime holds the root's lock, so a process of
    another instance is an orphan. A dying runtime may still have had a child
    between fork and exec, so callers sweep again a little later. Returns how
    many were killed."""
    killed = containment_for(root, instance).sweep()
    needle = b"\0" + f"{ROOT_VARIABLE}={root}".encode() + b"\0"
    ours = b"\0" + f"{INSTANCE_VARIABLE}={instance}".encode() + b"\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (proc / "environ").read_bytes() + b"\0"
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ and ours not in environ:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


async def _failed(exc: Exception) -> Any:
    """A later reply that is the error a handler raised when it was called."""
    raise exc


class ComponentActor(Actor):
    """Runs one component's lifecycle steps as subprocesses and reports its state."""

    stop_timeout = 20.0

    def __init__(
        self,
        recipe: Recipe,
        configuration: Mapping[str, Any],
        paths: ComponentPaths,
        *,
        thing_name: str = "edge-actors-local",
        on_state: Callable[[str, State, str], None] | None = None,
        on_output: Callable[[str, str], None] | None = None,
        errors: ErrorTracker | None = None,
        environment: Mapping[str, str] | None = None,
        dependencies: Mapping[str, tuple[ComponentPaths, Mapping[str, Any]]] | None = None,
        publish: Publisher | None = None,
    ) -> None:
        self.recipe = recipe
        self.configuration = configuration
        self.paths = paths
        self.thing_name = thing_name
        self._on_state = on_state
        self._on_output = on_output
        self._errors = errors or ErrorTracker()
        self._environment = dict(environment or {})
        self._dependencies = dict(dependencies or {})
        self._publish = publish
        self._context: ComponentContext | None = None
        self.state = State.NEW
        self._process: ChildProcess | None = None
        self._log_lines: list[bytes] = []

    def _set(self, state: State, reason: str = "") -> None:
        self.state = state
        log.info("%s: %s%s", self.recipe.name, state, f" ({reason})" if reason else "")
        if self._on_state is not None:
            self._on_state(self.recipe.name, state, reason)

    def _env(self, step: Step) -> dict[str, str]:
        # Greengrass's environment, not the runtime's: the system's PATH (python3 and
        # pip3 are not the runtime's), HOME the work folder, SVCUID, the IPC socket...
        env = component_environment(os.environ, self._environment, self.paths.work,
                                    self.thing_name)
        env.update(self.recipe.setenv)
        env.update(step.setenv)
        env["AWS_IOT_THING_NAME"] = self.thing_name
        env.setdefault("GG_ROOT_CA_PATH", "")
        env[ROOT_VARIABLE] = str(self.paths.root)  # finds orphans after a kill -9
        return env

    def _script(self, step: Step) -> str:
        return self._script_text(step.script)

    def _script_text(self, text: str) -> str:
        return interpolate(text, self.recipe, self.configuration, self.paths,
                           self.thing_name, self._dependencies)

    def _processes(self) -> ComponentProcesses:
        """The component's processes: its cgroup (or process groups), its RunWith."""
        containment = containment_for(self.paths.root, self._environment.get(INSTANCE_VARIABLE))
        return containment.component(self.recipe.name)

    async def _open(self, name: str, step: Step) -> ChildProcess:
        if step.requires_privilege and os.geteuid() != 0:
            raise ComponentError(
                f"component {self.recipe.name}: the {name} step has RequiresPrivilege: true, "
                "but the runtime is not running as root; run it as root or remove the flag "
                f"in {self.recipe.path}")
        processes = self._processes()
        if not getattr(self, "_spawned", False):
            # This instance's first step: what an earlier one left (a start that
            # failed after its startup step had started a daemon, a FINISHED run
            # step's children) goes first, so restarts do not pile copies up.
            self._spawned = True
            if processes.pids():
                await self._end_leftovers(processes)
        await anyio.Path(self.paths.work).mkdir(parents=True, exist_ok=True)
        env = self._env(step)
        # As Greengrass: RequiresPrivilege steps as root, the rest as the
        # component's RunWith posixUser or the runtime's default user.
        user = None
        if not step.requires_privilege:
            containment = processes.containment
            try:
                user = containment.posix_user(processes.run_with,
                                              f"component {self.recipe.name}: posixUser")
            except ValueError as exc:
                raise ComponentError(str(exc)) from None
            if user is not None:
                containment.own_work(self.paths.work, user)
                containment.own_artifacts([self.paths.artifacts, self.paths.decompressed],
                                          user)
                containment.open_socket(self.paths.root / "ipc.socket")
                env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
        return processes.spawn(["sh", "-c", self._script(step)], cwd=self.paths.work,
                               env=env, user=user)

    async def _pump(self, process: ChildProcess, step: str) -> None:
        async def lines(stream: anyio.abc.ByteReceiveStream, label: str) -> None:
            buffer = ""
            async for chunk in TextReceiveStream(stream, errors="replace"):
                buffer += chunk
                *complete, buffer = buffer.split("\n")
                for line in complete:
                    self._output(f"{step}.{label}", line)
            if buffer:
                self._output(f"{step}.{label}", buffer)

        async with anyio.create_task_group() as tg:
            if process.stdout is not None:
                tg.start_soon(lines, process.stdout, "stdout")
            if process.stderr is not None:
                tg.start_soon(lines, process.stderr, "stderr")

    def _output(self, where: str, line: str) -> None:
        log.info("%s [%s] %s", self.recipe.name, where, line)
        step, _, stream = where.partition(".")
        self._log_lines.append(orjson.dumps({
            "thread": step, "level": "WARN" if stream == "stderr" else "INFO",
            "eventType": f"shell-runner-{stream}", "message": line,
            "contexts": {"component": self.recipe.name, "stream": stream.upper()},
            "loggerName": self.recipe.name, "timestamp": int(time.time() * 1000),
        }))
        if len(self._log_lines) >= 64:
            self._flush_log()
        if self._on_output is not None:
            self._on_output(self.recipe.name, line)

    def _flush_log(self) -> None:
        # Small appends of whole lines: a reader never sees half a line.
        if not self._log_lines:
            return
        self.paths.log.parent.mkdir(parents=True, exist_ok=True)
        with self.paths.log.open("ab") as handle:
            handle.write(b"\n".join(self._log_lines) + b"\n")
        self._log_lines.clear()

    async def _run_step(self, name: str) -> None:
        """Run a step to completion; raises ComponentError on a non-zero exit or timeout."""
        step = self.recipe.lifecycle.get(name)
        if step is None or self._skip(name, step):
            return
        try:  # a Timeout of "{configuration:/...}" is read as a number only now
            timeout = step.seconds(self._script_text) or DEFAULT_STEP_TIMEOUT.get(name, 120.0)
        except RecipeError as exc:
            raise ComponentError(f"component {self.recipe.name}: {name} step: {exc} "
                                 f"(Lifecycle.{name.capitalize()}.Timeout in "
                                 f"{self.recipe.path})") from None
        process = await self._open(name, step)
        try:
            with anyio.fail_after(timeout):
                await self._pump(process, name)
                code = await process.wait()
        except TimeoutError:
            await self._end(process)
            raise ComponentError(
                f"component {self.recipe.name}: {name} step timed out after {timeout:g} s "
                f"(raise Lifecycle.{name.capitalize()}.Timeout in {self.recipe.path})"
            ) from None
        if code != 0:
            raise ComponentError(
                f"component {self.recipe.name}: {name} step exited with code {code}")

    def _skip(self, name: str, step: Step) -> bool:
        if step.skipif is None:
            return False
        kind, target = step.skipif
        target = interpolate(target, self.recipe, self.configuration, self.paths,
                             self.thing_name)
        found = shutil.which(target) is not None if kind == "onpath" \
            else (self.paths.work / target).exists()
        found ^= step.skipif_negated  # "!onpath x": skip unless x is found
        if found:
            log.info("%s: %s step skipped (Skipif: %s %s)", self.recipe.name, name, kind, target)
        return found

    async def _end_leftovers(self, processes: ComponentProcesses) -> None:
        with anyio.CancelScope(shield=True):
            if not await processes.kill(STOP_GRACE):
                raise ComponentError(
                    f"component {self.recipe.name}: processes of its earlier start are still "
                    f"running after SIGKILL ({processes.pids()}); not starting it again")

    async def _end(self, process: ChildProcess) -> bool:
        """SIGTERM everything of the component (the step's process and all it started),
        then SIGKILL after the grace period. True when nothing of it is left."""
        clean = False
        with anyio.CancelScope(shield=True):
            clean = await self._processes().kill(STOP_GRACE)
            with anyio.move_on_after(STOP_GRACE):
                await process.wait()
            if process.poll() is None:  # not in the component's groups any more?
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()
            process.close()
        return clean

    async def on_start(self) -> None:
        self._set(State.NEW)
        try:
            await self._bootstrap()
            await self._run_step("install")
            self._set(State.INSTALLED)
            if "startup" in self.recipe.lifecycle:
                self._set(State.STARTING)
                await self._run_step("startup")
                self._set(State.RUNNING)
            elif "run" in self.recipe.lifecycle:
                run = self.recipe.lifecycle["run"]
                entry = run.setenv.get(IN_PROCESS) or self.recipe.setenv.get(IN_PROCESS)
                if entry is not None:
                    main = load_entry_point(self.recipe.name, entry)
                    self._set(State.RUNNING)
                    self.task_group.start_soon(self._watch_in_process, main)
                else:
                    self._process = await self._open("run", run)
                    self._set(State.RUNNING)
                    self.task_group.start_soon(self._watch_run, self._process)
            else:
                self._set(State.FINISHED, "no startup or run step")
        except Exception as exc:
            if await self._errored(str(exc)):
                return
            raise

    async def _errored(self, reason: str) -> bool:
        """ERRORED, then recover; True when that made the component BROKEN (no restart)."""
        self._set(State.ERRORED, reason)
        await self._recover()
        if self._errors.record(self.recipe.name):
            self._set(State.BROKEN, f"{self._errors.limit} errors within "
                      f"{self._errors.reset_time:g} s; a new deployment clears it")
            self.finish()
            return True
        return False

    async def _bootstrap(self) -> None:
        """Bootstrap runs once per component version (when it is first deployed or
        updated), unlike install, which runs at every start."""
        if "bootstrap" not in self.recipe.lifecycle:
            return
        marker = anyio.Path(self.paths.work) / f".bootstrapped@{self.recipe.version}"
        if await marker.exists():
            return
        await self._run_step("bootstrap")
        await marker.touch()

    async def _watch_run(self, process: ChildProcess) -> None:
        await self._pump(process, "run")
        code = await process.wait()
        if self.state in (State.STOPPING, State.FINISHED):
            return  # stopped on purpose (on_stop may have finished first): not an error
        if code == 0:
            self._set(State.FINISHED)
            self.finish()
            return
        reason = f"component {self.recipe.name}: run step exited with code {code}"
        if not await self._errored(reason):
            raise ComponentError(reason)

    def _resolved(self, configuration: Mapping[str, Any]) -> Any:
        def resolve(value: Any) -> Any:
            # In-process entry points see their configuration with the recipe
            # variables filled in, as a Script's command line would.
            if isinstance(value, str):
                return interpolate(value, self.recipe, self.configuration, self.paths,
                                   self.thing_name, self._dependencies)
            if isinstance(value, Mapping):
                return {k: resolve(v) for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(v) for v in value]
            return value

        return resolve(configuration)

    def _in_process_context(self) -> ComponentContext:
        dependencies = {
            name: ComponentContext(name, paths.artifacts.name, config, paths.work,
                                   paths.artifacts, paths.decompressed, self.thing_name)
            for name, (paths, config) in self._dependencies.items()}
        context = ComponentContext(
            self.recipe.name, self.recipe.version, self._resolved(self.configuration),
            self.paths.work, self.paths.artifacts, self.paths.decompressed, self.thing_name,
            dependencies, log=logging.getLogger(f"actors.component.{self.recipe.name}"),
            output=lambda line: self._output("run.stdout", line))
        if self._publish is not None:
            context.publish = self._publish
        return context

    async def _watch_in_process(self, main: EntryPoint) -> None:
        context = self._context = self._in_process_context()
        try:
            await main(context)
        except Exception as exc:
            reason = f"component {self.recipe.name}: in-process run failed: {exc}"
            # Our own errors say what to do; anything else gets its traceback.
            log.error("%s", reason, exc_info=not isinstance(exc, ActorsError))
            if not await self._errored(reason):
                raise
            return
        if self.state is not State.STOPPING:
            self._set(State.FINISHED)
            self.finish()

    async def _recover(self) -> None:
        try:
            await self._run_step("recover")
        except ComponentError as exc:
            log.warning("%s", exc)

    async def on_stop(self) -> None:
        # The log is written on the way, but a full disk must not keep the
        # component's processes alive.
        self._flush_log_or_warn()
        if self.state is State.FINISHED:
            # Its run step exited 0 (or it has none): as in Greengrass, what it left
            # running stays until the component is stopped or removed
            # (Containment.stop_component) or the runtime stops.
            return
        stopping = self.state not in (State.ERRORED, State.BROKEN)
        if stopping:
            self._set(State.STOPPING)
            try:
                await self._run_step("shutdown")
            except ComponentError as exc:
                log.warning("%s", exc)
        # Whatever the component left (a daemon its startup step started, the
        # background child of a run step that exited) goes with it.
        with anyio.CancelScope(shield=True):
            if self._process is not None:
                clean = await self._end(self._process)
            else:
                clean = await self._processes().kill(STOP_GRACE)
        if clean:
            self._processes().remove()
        self._flush_log_or_warn()
        if not clean:
            raise ComponentError(
                f"component {self.recipe.name}: processes are still running after SIGKILL "
                f"(see {self._processes().pids()}); the component was not stopped")
        if stopping:
            self._set(State.FINISHED)

    def _flush_log_or_warn(self) -> None:
        try:
            self._flush_log()
        except OSError as exc:
            log.warning("component %s: cannot write its log %s: %s", self.recipe.name,
                        self.paths.log, exc.strerror or exc)

    @property
    def reconfigurable(self) -> bool:
        """In-process components take configuration updates without a restart."""
        return self._context is not None

    async def receive(self, message: Any) -> Any:
        if message == "state":
            return self.state
        if isinstance(message, Reconfigure):
            if self._context is None:
                return False
            self.configuration = message.configuration
            self._context.reconfigure(self._resolved(message.configuration))
            return True
        # Requests overlap (each replies when its handler returns); a failed
        # request fails its asker, not the component. A serving component's handler
        # is the later reply itself (no coroutine around it on each request's path).
        context = self._context
        if context is not None and context.handler is not None:
            try:
                return Later(context.handler(message))
            except Exception as exc:  # not an async function after all: to the asker only
                return Later(_failed(exc))
        return Later(self._request(message))

    async def _request(self, message: Any) -> Any:
        """A request that came before ``ctx.serve()`` (or to a component that serves none)."""
        context = self._context
        if context is not None and context.handler is None:
            with anyio.move_on_after(SERVE_GRACE):
                await context.serving.wait()
        handler = context.handler if context is not None else None
        if handler is None:
            shown = repr(message)
            raise ComponentNotServing(
                f"component {self.recipe.name} ({self.state}) serves no requests: only a "
                f"running in-process component that calls ctx.serve() answers "
                f"{shown[:60] + '...' if len(shown) > 60 else shown}")
        return await handler(message)
