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

import enum
import logging
import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

from ..kernel import Actor, ActorsError
from ..recipe import Recipe, Step

log = logging.getLogger("actors.component")

DEFAULT_STEP_TIMEOUT = {"install": 120.0, "startup": 120.0, "shutdown": 15.0, "recover": 60.0}
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


class ComponentError(ActorsError, RuntimeError):
    """A lifecycle step failed: names the component, the step and the exit code or timeout."""


@dataclass(frozen=True)
class ComponentPaths:
    """Where a component's files are: ``{artifacts:path}``, ``{work:path}``,
    ``{kernel:rootPath}``."""

    root: Path
    artifacts: Path
    work: Path


_VARIABLE = re.compile(
    r"\{(?:([A-Za-z0-9._-]+):)?(artifacts|work|configuration|kernel|iot):([^}]*)\}")


def _pointer(config: Mapping[str, Any], pointer: str) -> Any:
    node: Any = config
    if pointer in ("", "/"):
        return node
    for raw in pointer.lstrip("/").split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def interpolate(text: str, recipe: Recipe, config: Mapping[str, Any], paths: ComponentPaths,
                thing_name: str) -> str:
    """Replace the recipe variables Greengrass defines; unknown ones are left as they are."""

    def value(match: re.Match[str]) -> str:
        other, namespace, key = match.groups()
        if other is not None and other != recipe.name:
            return match.group(0)  # a dependency's variables: resolved by the deployment
        if namespace == "artifacts":
            if key == "path":
                return str(paths.artifacts)
            if key == "decompressedPath":
                return str(paths.artifacts.parent.parent / "artifacts-unarchived"
                           / recipe.name / recipe.version)
        elif namespace == "work" and key == "path":
            return str(paths.work)
        elif namespace == "kernel" and key == "rootPath":
            return str(paths.root)
        elif namespace == "iot" and key == "thingName":
            return thing_name
        elif namespace == "configuration":
            found = _pointer(config, key)
            if found is None:
                return ""
            if isinstance(found, str):
                return found
            import orjson

            return orjson.dumps(found).decode()
        return match.group(0)

    return _VARIABLE.sub(value, text)


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
    ) -> None:
        self.recipe = recipe
        self.configuration = configuration
        self.paths = paths
        self.thing_name = thing_name
        self._on_state = on_state
        self._on_output = on_output
        self.state = State.NEW
        self._process: anyio.abc.Process | None = None

    def _set(self, state: State, reason: str = "") -> None:
        self.state = state
        log.info("%s: %s%s", self.recipe.name, state, f" ({reason})" if reason else "")
        if self._on_state is not None:
            self._on_state(self.recipe.name, state, reason)

    def _env(self, step: Step) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.recipe.setenv)
        env.update(step.setenv)
        env["AWS_IOT_THING_NAME"] = self.thing_name
        env["GG_ROOT_CA_PATH"] = ""
        return env

    def _script(self, step: Step) -> str:
        return interpolate(step.script, self.recipe, self.configuration, self.paths,
                           self.thing_name)

    async def _open(self, name: str, step: Step) -> anyio.abc.Process:
        self.paths.work.mkdir(parents=True, exist_ok=True)
        return await anyio.open_process(
            ["sh", "-c", self._script(step)], cwd=self.paths.work, env=self._env(step),
            stdin=None, start_new_session=True)

    async def _pump(self, process: anyio.abc.Process, step: str) -> None:
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
        if self._on_output is not None:
            self._on_output(self.recipe.name, line)

    async def _run_step(self, name: str) -> None:
        """Run a step to completion; raises ComponentError on a non-zero exit or timeout."""
        step = self.recipe.lifecycle.get(name)
        if step is None:
            return
        timeout = step.timeout or DEFAULT_STEP_TIMEOUT.get(name, 120.0)
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

    async def _end(self, process: anyio.abc.Process) -> None:
        """SIGTERM the step's process group, then SIGKILL after the grace period."""
        if process.returncode is not None:
            return
        with anyio.CancelScope(shield=True):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            with anyio.move_on_after(STOP_GRACE):
                await process.wait()
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()

    async def on_start(self) -> None:
        self._set(State.NEW)
        try:
            await self._run_step("install")
            self._set(State.INSTALLED)
            if "startup" in self.recipe.lifecycle:
                self._set(State.STARTING)
                await self._run_step("startup")
                self._set(State.RUNNING)
            elif "run" in self.recipe.lifecycle:
                self._process = await self._open("run", self.recipe.lifecycle["run"])
                self._set(State.RUNNING)
                self.task_group.start_soon(self._watch_run, self._process)
            else:
                self._set(State.FINISHED, "no startup or run step")
        except Exception as exc:
            self._set(State.ERRORED, str(exc))
            await self._recover()
            raise

    async def _watch_run(self, process: anyio.abc.Process) -> None:
        await self._pump(process, "run")
        code = await process.wait()
        if self.state is State.STOPPING:
            return
        if code == 0:
            self._set(State.FINISHED)
            self.finish()
            return
        self._set(State.ERRORED, f"run exited with code {code}")
        await self._recover()
        raise ComponentError(f"component {self.recipe.name}: run step exited with code {code}")

    async def _recover(self) -> None:
        try:
            await self._run_step("recover")
        except ComponentError as exc:
            log.warning("%s", exc)

    async def on_stop(self) -> None:
        if self.state in (State.FINISHED, State.ERRORED):
            return
        self._set(State.STOPPING)
        try:
            await self._run_step("shutdown")
        except ComponentError as exc:
            log.warning("%s", exc)
        if self._process is not None:
            await self._end(self._process)
        self._set(State.FINISHED)

    async def receive(self, message: Any) -> Any:
        if message == "state":
            return self.state
        raise TypeError(f"component {self.recipe.name}: unknown message {message!r}")
