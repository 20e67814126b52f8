"""Supervisor: OTP-style restart strategies over an ordered set of child actors.

What it does (docs/ARCHITECTURE.md, "Supervision", has the rules it follows):

* starts children one at a time in dependency order (ties: declaration order),
  each awaited until its ``on_start`` returned; the first failure stops the
  started ones in reverse order and raises :class:`ChildStartError`;
* runs each child in a runner task that turns the child's exit into a
  ``ChildExited`` system message (the exception never reaches the task group);
* restarts per restart type (permanent / transient / temporary) and strategy
  (one_for_one, rest_for_one, one_for_all), stopping the affected set in
  reverse start order (request, wait ``shutdown`` seconds, then cancel); under
  one_for_one a child also restarts with each child it names in ``restart_with``
  (an edge of the dependency graph, not the start order: Greengrass's HARD
  dependencies);
* the first restart after a quiet spell is immediate, consecutive ones back off
  exponentially with jitter; a failed restart counts as a restart and is retried
  through the supervisor's own mailbox, so a stop request can interleave;
* more than ``max_restarts`` restarts within ``period`` seconds: stop every child
  in reverse order and exit with :class:`MaxRestartIntensity`, which the parent
  supervisor handles as this child's failure (escalation).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._actor import DEFAULT_MAILBOX_SIZE, STOP, Actor, ActorRef, _Cell, run_instance, unwrap
from ._errors import ChildSpecError, ChildStartError, MaxRestartIntensity

log = logging.getLogger("actors.kernel.supervisor")


class Strategy(enum.StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.StrEnum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit (an exception)
    TEMPORARY = "temporary"  # never restarted


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th consecutive restart of a child: 0 for the first,
    then ``initial * factor**(n-2)`` capped at ``maximum``, times 1 +/- ``jitter``.
    A child that stayed up ``reset_after`` seconds starts counting again."""

    initial: float = 0.01
    factor: float = 2.0
    maximum: float = 2.0
    jitter: float = 0.1
    reset_after: float = 1.0

    def delay(self, consecutive: int) -> float:
        if consecutive <= 1:
            return 0.0
        base = min(self.maximum, self.initial * self.factor ** (consecutive - 2))
        return base * (1.0 + self.jitter * (2.0 * random.random() - 1.0))


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor runs one child; validated when built.

    ``factory`` makes a fresh actor on every (re)start. ``shutdown`` is the
    seconds a stop request may take before the child is cancelled, ``"brutal"``
    to cancel at once, or ``None`` to wait forever (child supervisors only).
    ``restart_with`` names children among ``depends_on`` whose restart under
    one_for_one takes this child along.
    """

    id: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    shutdown: float | str | None = 5.0
    kind: str = "worker"
    depends_on: tuple[str, ...] = ()
    restart_with: tuple[str, ...] = ()
    mailbox_size: int = DEFAULT_MAILBOX_SIZE

    def __post_init__(self) -> None:
        where = f"child {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise ChildSpecError(f"child spec: id must be a non-empty string, got {self.id!r}")
        if not callable(self.factory):
            raise ChildSpecError(f"{where}: factory must be callable, got {self.factory!r}")
        try:
            object.__setattr__(self, "restart", Restart(self.restart))
        except ValueError:
            raise ChildSpecError(
                f"{where}: restart must be one of permanent, transient, temporary; "
                f"got {self.restart!r}"
            ) from None
        if self.kind not in ("worker", "supervisor"):
            raise ChildSpecError(
                f"{where}: kind must be 'worker' or 'supervisor', got {self.kind!r}")
        if self.shutdown is None:
            if self.kind != "supervisor":
                raise ChildSpecError(
                    f"{where}: shutdown=None (wait forever) is only for supervisors; "
                    "give workers a number of seconds or 'brutal'"
                )
        elif self.shutdown != "brutal" and not (
            isinstance(self.shutdown, int | float) and self.shutdown >= 0
        ):
            raise ChildSpecError(
                f"{where}: shutdown must be seconds >= 0, 'brutal' or None; got {self.shutdown!r}"
            )
        if isinstance(self.depends_on, str):
            object.__setattr__(self, "depends_on", (self.depends_on,))
        else:
            object.__setattr__(self, "depends_on", tuple(self.depends_on))
        if self.id in self.depends_on:
            raise ChildSpecError(f"{where}: depends on itself")
        object.__setattr__(self, "restart_with", tuple(
            (self.restart_with,) if isinstance(self.restart_with, str) else self.restart_with))
        stray = [n for n in self.restart_with if n not in self.depends_on]
        if stray:
            raise ChildSpecError(f"{where}: restart_with names {', '.join(map(repr, stray))}, "
                                 "which it does not depend on (add to depends_on)")
        if self.mailbox_size < 1:
            raise ChildSpecError(f"{where}: mailbox_size must be >= 1, got {self.mailbox_size}")


@dataclass(frozen=True)
class SupervisorEvent:
    """What a supervisor did: child_started, child_exited, start_error,
    shutdown_error, child_restarting or max_intensity."""

    kind: str
    supervisor: str
    child: str
    reason: BaseException | None = None
    attempt: int = 0
    backoff: float = 0.0
    time: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SupervisorStatistics:
    name: str
    strategy: str
    restarts_in_window: int
    children: tuple[tuple[str, str], ...]  # (id, state) in start order


# System messages a supervisor understands.
@dataclass(frozen=True, slots=True)
class ChildExited:
    # The child record itself, not its id: after this supervisor restarts, its
    # cell may still hold exits of the previous instance's children.
    child: _Child
    generation: int
    reason: BaseException | None


@dataclass(frozen=True, slots=True)
class TerminateChild:
    child_id: str
    reply: asyncio.Future[None] | None


@dataclass(frozen=True, slots=True)
class StartChild:
    spec: ChildSpec
    reply: asyncio.Future[ActorRef]


class _ResumeRestarts:
    __slots__ = ()


_RESUME = _ResumeRestarts()


class _Child:
    __slots__ = ("cell", "consecutive", "done", "expected", "generation", "scope", "spec",
                 "started_at", "waited")

    def __init__(self, spec: ChildSpec, cell: _Cell) -> None:
        self.spec = spec
        self.cell = cell
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None  # set when the current runner has finished
        self.expected = False  # the supervisor itself is stopping this instance
        self.generation = 0
        self.consecutive = 0
        self.started_at = 0.0
        self.waited = False

    @property
    def running(self) -> bool:
        return self.done is not None and not self.done.is_set()


def order_by_dependencies(specs: Sequence[ChildSpec], owner: str = "supervisor") -> list[ChildSpec]:
    """Topological order, ties broken by declaration order; names a cycle or a missing child."""
    by_id: dict[str, ChildSpec] = {}
    for spec in specs:
        if spec.id in by_id:
            raise ChildSpecError(f"{owner}: two children have the id {spec.id!r}")
        by_id[spec.id] = spec
    for spec in specs:
        for dep in spec.depends_on:
            if dep not in by_id:
                raise ChildSpecError(
                    f"{owner}: child {spec.id!r} depends on {dep!r}, which is not a child here"
                )
    ordered: list[ChildSpec] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def visit(spec: ChildSpec) -> None:
        if spec.id in placed:
            return
        if spec.id in visiting:
            cycle = [*visiting[visiting.index(spec.id):], spec.id]
            raise ChildSpecError(f"{owner}: dependency cycle {' -> '.join(cycle)}")
        visiting.append(spec.id)
        for dep in spec.depends_on:
            visit(by_id[dep])
        visiting.pop()
        placed.add(spec.id)
        ordered.append(spec)

    for spec in specs:
        visit(spec)
    return ordered


class Supervisor(Actor):
    """An actor whose job is to start, watch, restart and stop child actors."""

    stop_timeout = float("inf")  # stopping children is bounded by their own shutdown times

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            raise ChildSpecError(
                f"supervisor strategy must be one_for_one, one_for_all or rest_for_one; "
                f"got {strategy!r}"
            ) from None
        if max_restarts < 0 or period <= 0:
            raise ChildSpecError(
                f"supervisor intensity: need max_restarts >= 0 and period > 0, "
                f"got {max_restarts} in {period}"
            )
        self._specs = order_by_dependencies(children)
        self.max_restarts = max_restarts
        self.period = period
        self.backoff = backoff or Backoff()
        self._children: list[_Child] = []  # start order
        self._by_id: dict[str, _Child] = {}
        self._restart_times: deque[float] = deque()
        self._pending: list[_Child] = []  # waiting to be restarted, in start order

    # -- lifecycle ---------------------------------------------------------

    async def on_start(self) -> None:
        for spec in self._specs:
            child = self._add(spec)
            try:
                await self._start_child(child)
            except Exception as exc:
                await self._stop_all()
                raise ChildStartError(
                    f"supervisor {self.name!r}: child {spec.id!r} failed to start: {exc}"
                ) from exc

    async def on_stop(self) -> None:
        await self._stop_all()

    async def handle_system(self, message: Any) -> bool:
        if isinstance(message, ChildExited):
            await self._child_exited(message)
        elif message is _RESUME:
            await self._resume_restarts()
        elif isinstance(message, TerminateChild):
            await self._terminate_request(message)
        elif isinstance(message, StartChild):
            await self._start_request(message)
        elif message is STOP:
            return False
        else:
            return await super().handle_system(message)
        return True

    async def receive(self, message: Any) -> Any:
        raise TypeError(f"supervisor {self.name!r} takes no user messages (got {message!r})")

    def statistics_of_children(self) -> SupervisorStatistics:
        self._trim_window(time.monotonic())
        return SupervisorStatistics(
            name=self.name,
            strategy=str(self.strategy),
            restarts_in_window=len(self._restart_times),
            children=tuple((c.spec.id, c.cell.state) for c in self._children),
        )

    # -- starting ----------------------------------------------------------

    def _add(self, spec: ChildSpec) -> _Child:
        cell = self.system._register(spec.id, spec.mailbox_size, parent=self._cell)
        child = _Child(spec, cell)
        self._children.append(child)
        self._by_id[spec.id] = child
        return child

    def _forget(self, child: _Child) -> None:
        self._children.remove(child)
        del self._by_id[child.spec.id]

    async def _start_child(self, child: _Child) -> None:
        child.generation += 1
        child.expected = False
        child.done = anyio.Event()
        await self.task_group.start(self._child_runner, child, child.generation)
        child.started_at = time.monotonic()
        self._emit("child_started", child)

    async def _child_runner(
        self, child: _Child, generation: int, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        started = False

        def mark_started() -> None:
            nonlocal started
            started = True
            task_status.started()

        reason: BaseException | None = None
        assert child.done is not None
        done = child.done
        try:
            with anyio.CancelScope() as scope:
                child.scope = scope
                await run_instance(child.cell, child.spec.factory, mark_started)
        except Exception as exc:
            if not started:
                child.cell.state = "stopped"
                done.set()
                raise  # to _start_child's caller through TaskGroup.start()
            reason = unwrap(exc)
        except BaseException:
            done.set()
            raise
        done.set()
        if not started:  # cancelled before it started: report like a failure to start
            child.cell.state = "stopped"
            raise ChildStartError(f"child {child.spec.id!r} was cancelled while starting")
        child.cell.state = "stopped"
        self._cell.post_system(ChildExited(child, generation, reason))

    # -- stopping ----------------------------------------------------------

    async def _terminate(self, child: _Child) -> None:
        """Stop one running child: request, wait its shutdown time, then cancel."""
        if not child.running:
            return
        assert child.done is not None and child.scope is not None
        child.expected = True
        shutdown = child.spec.shutdown
        if shutdown == "brutal":
            child.scope.cancel()
        else:
            child.cell.post_system(STOP)
            timeout = float("inf") if shutdown is None else float(shutdown)
            with anyio.move_on_after(timeout, shield=True):
                await child.done.wait()
            if not child.done.is_set():
                self._emit("shutdown_error", child)
                log.warning("supervisor %s: child %s did not stop within %g s; cancelling it",
                            self.name, child.spec.id, timeout)
                child.scope.cancel()
        with anyio.CancelScope(shield=True):
            await child.done.wait()

    async def _stop_all(self) -> None:
        self._pending.clear()
        for child in reversed(self._children):
            await self._terminate(child)
        for child in reversed(self._children):
            self._remove(child, "supervisor stopped")
        self._children.clear()
        self._by_id.clear()

    def _remove(self, child: _Child, reason: str) -> None:
        child.cell.close(reason)
        self.system._unregister(child.cell)
        if child in self._pending:
            self._pending.remove(child)

    async def _terminate_request(self, message: TerminateChild) -> None:
        child = self._find(message.child_id)
        if child is not None:
            await self._terminate(child)
            self._remove(child, "terminated")
            self._forget(child)
        if message.reply is not None and not message.reply.done():
            message.reply.set_result(None)

    async def _start_request(self, message: StartChild) -> None:
        reply = message.reply
        spec = message.spec
        try:
            # Only the new child needs checking (dependencies already started, so no
            # cycle is possible): O(its dependencies), not O(children).
            if spec.id in self._by_id:
                raise ChildSpecError(f"{self.name}: two children have the id {spec.id!r}")
            for dep in spec.depends_on:
                if dep not in self._by_id:
                    raise ChildSpecError(f"{self.name}: child {spec.id!r} depends on {dep!r}, "
                                         "which is not a child here")
            child = self._add(spec)
        except Exception as exc:
            if not reply.done():
                reply.set_exception(exc)
            return
        try:
            await self._start_child(child)
        except Exception as exc:
            self._remove(child, "failed to start")
            self._forget(child)
            if not reply.done():
                reply.set_exception(ChildStartError(
                    f"supervisor {self.name!r}: child {child.spec.id!r} failed to start: {exc}"
                ))
                reply.exception().__cause__ = exc  # type: ignore[union-attr]
            return
        if not reply.done():
            reply.set_result(child.cell.ref)

    # -- restarting --------------------------------------------------------

    async def _child_exited(self, message: ChildExited) -> None:
        child = message.child
        if child not in self._children or child.generation != message.generation \
                or child.expected:
            return  # stopped on purpose, or an exit we already handled
        reason = message.reason
        self._emit("child_exited", child, reason)
        if reason is not None:
            log.error("supervisor %s: child %s crashed", self.name, child.spec.id,
                      exc_info=(type(reason), reason, reason.__traceback__))
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and reason is None):
            self._remove(child, "exited")
            self._forget(child)
            return
        now = time.monotonic()
        if now - child.started_at >= self.backoff.reset_after:
            child.consecutive = 0
        self._count_restart(child, reason)
        affected = self._affected(child)
        for other in reversed(affected):
            await self._terminate(other)
        for other in affected:
            other.cell.state = "restarting"
            if other not in self._pending:
                self._pending.append(other)
        self._pending.sort(key=self._children.index)
        await self._resume_restarts()

    def _affected(self, child: _Child) -> list[_Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return self.followers(child.spec.id, include_self=True)
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._children)
        return self._children[self._children.index(child):]

    def followers(self, child_id: str, *, include_self: bool = False) -> list[_Child]:
        """The children that restart with ``child_id`` through ``restart_with``
        edges, transitively, in start order (with the child itself if asked)."""
        found = {child_id}
        out = []
        for other in self._children:  # start order: dependencies come first
            if other.spec.id == child_id:
                if include_self:
                    out.append(other)
            elif any(d in found for d in other.spec.restart_with):
                found.add(other.spec.id)
                out.append(other)
        return out

    async def _resume_restarts(self) -> None:
        while self._pending:
            child = self._pending[0]
            if child.running:  # already back (restarted by a request in between)
                self._pending.pop(0)
                continue
            child.consecutive += 1
            delay = self.backoff.delay(child.consecutive)
            if delay > 0 and not child.waited:
                child.waited = True
                child.consecutive -= 1  # counted again when the wait is over
                self.task_group.start_soon(self._resume_later, delay)
                return
            child.waited = False
            child.cell.restarts += 1
            self._emit("child_restarting", child, attempt=child.consecutive, backoff=delay)
            try:
                await self._start_child(child)
            except Exception as exc:
                self._emit("start_error", child, exc, attempt=child.consecutive,
                           backoff=self.backoff.delay(child.consecutive + 1))
                log.error("supervisor %s: restart %d of child %s failed: %s",
                          self.name, child.consecutive, child.spec.id, exc)
                self._count_restart(child, exc)
                continue
            self._pending.pop(0)

    async def _resume_later(self, delay: float) -> None:
        await anyio.sleep(delay)
        self._cell.post_system(_RESUME)

    def _count_restart(self, child: _Child, reason: BaseException | None) -> None:
        now = time.monotonic()
        self._restart_times.append(now)
        self._trim_window(now)
        if len(self._restart_times) > self.max_restarts:
            self._emit("max_intensity", child, reason)
            raise MaxRestartIntensity(
                f"supervisor {self.name!r}: more than {self.max_restarts} restarts in "
                f"{self.period:g} s (last: child {child.spec.id!r}); giving up"
            ) from reason

    def _trim_window(self, now: float) -> None:
        times = self._restart_times
        while times and times[0] < now - self.period:
            times.popleft()

    # -- helpers -----------------------------------------------------------

    def _find(self, child_id: str) -> _Child | None:
        return self._by_id.get(child_id)

    def _emit(self, kind: str, child: _Child, reason: BaseException | None = None,
              attempt: int = 0, backoff: float = 0.0) -> None:
        self.system._emit(SupervisorEvent(kind, self.name, child.spec.id, reason, attempt, backoff))


async def start_child(supervisor: ActorRef, spec: ChildSpec) -> ActorRef:
    """Add a child to a running supervisor and start it; returns its ref.

    Raises :class:`ChildSpecError` for a duplicate id or missing dependency and
    :class:`ChildStartError` if it fails to start.
    """
    reply: asyncio.Future[ActorRef] = asyncio.get_running_loop().create_future()
    supervisor._cell.post_system(StartChild(spec, reply))
    return await reply
