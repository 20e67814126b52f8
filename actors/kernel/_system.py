"""ActorSystem: the root of the supervision tree, the name registry, dead letters,
events, signal handling and the embedding API."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc

from ._actor import (
    DEFAULT_MAILBOX_SIZE,
    STOP,
    Actor,
    ActorRef,
    _Cell,
    _Deadlines,
    run_instance,
    unwrap,
)
from ._errors import ActorsError, NameTaken, SystemFailure
from ._supervisor import (
    Backoff,
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorEvent,
    start_child,
)

log = logging.getLogger("actors.kernel")
dead_log = logging.getLogger("actors.kernel.deadletters")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    recipient: str
    message: Any
    reason: str


@dataclass(frozen=True, slots=True)
class SystemStatistics:
    actors: int
    handled: int
    failed: int
    restarts: int
    dead_letters: int


class DeadLetters:
    """Messages that could not be delivered: counted per recipient, the recent ones kept, logged.

    Each one is logged at DEBUG; a WARNING goes out at the 1st, 10th, 100th, ...
    so a flood is visible without drowning the log.
    """

    def __init__(self, keep: int = 100) -> None:
        self.count = 0
        self._by_recipient: Counter[str] = Counter()
        self.recent: deque[DeadLetter] = deque(maxlen=keep)

    def record(self, recipient: str, message: Any, reason: str) -> None:
        self.count += 1
        self._by_recipient[recipient] += 1
        letter = DeadLetter(recipient, message, reason)
        self.recent.append(letter)
        dead_log.debug("dead letter to %s (%s): %r", recipient, reason, message)
        n = self.count
        if n & (n - 1) == 0 or n % 1000 == 0 or n < 10:
            dead_log.warning("%d dead letter(s) so far; latest to actor %r (%s): %.200r",
                             n, recipient, reason, message)

    def count_for(self, recipient: str) -> int:
        return self._by_recipient.get(recipient, 0)


_ROOT = "$root"


class ActorSystem:
    """Runs actors under one root supervisor; usable from any asyncio program::

        async with ActorSystem() as system:
            ref = await system.spawn(MyActor, name="mine")
            await ref.tell("hello")

    Leaving the block stops every actor in reverse start order. If the root
    supervisor gives up (restart intensity exceeded), the block is cancelled and
    :class:`SystemFailure` is raised from its exit, with the reason as cause.
    """

    def __init__(
        self,
        name: str = "edge-actors",
        *,
        max_restarts: int = 10,
        period: float = 5.0,
        backoff: Backoff | None = None,
        keep_events: int = 1000,
        handle_signals: bool = False,
    ) -> None:
        self.name = name
        self._handle_signals = handle_signals
        self._signal_scope = anyio.CancelScope()
        self._root_intensity = (max_restarts, period, backoff)
        self._cells: dict[str, _Cell] = {}
        self.dead_letters = DeadLetters()
        self.events: deque[SupervisorEvent] = deque(maxlen=keep_events)
        self._listeners: list[Callable[[SupervisorEvent], None]] = []
        self._retired = Counter[str]()
        self._tg: anyio.abc.TaskGroup | None = None
        self._root: _Cell | None = None
        self._root_done = anyio.Event()
        self._shutdown = anyio.Event()
        self.failure: BaseException | None = None
        self._deadlines: _Deadlines | None = None  # ask timeouts, made on first use
        self._counter = 0

    # -- embedding ---------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            self._root = _Cell(self, _ROOT, DEFAULT_MAILBOX_SIZE, parent=None)
            await self._tg.start(self._run_root)
            if self._handle_signals:
                await self._tg.start(self._watch_signals)
        except BaseException:
            await self._tg.__aexit__(None, None, None)
            raise
        log.debug("actor system %s started (%s)", self.name, loop_name())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._root is not None
        with anyio.CancelScope(shield=True):
            await self.shutdown()
        try:
            suppressed = await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if exc is not None and unwrap(group) is exc:
                return False  # the block's own exception: let it through unwrapped
            raise SystemFailure(f"actor system {self.name!r} failed: {group}") from unwrap(group)
        if self.failure is not None:
            raise SystemFailure(
                f"actor system {self.name!r} stopped: its root supervisor failed: {self.failure}"
            ) from self.failure
        return suppressed

    async def shutdown(self) -> None:
        """Stop every actor in reverse start order and wait for them (idempotent)."""
        self._shutdown.set()
        self._signal_scope.cancel()
        if self._root is not None and not self._root_done.is_set():
            self._root.post_system(STOP)
            await self._root_done.wait()

    @property
    def stopping(self) -> bool:
        """True once a shutdown was asked for (a signal, :meth:`request_shutdown`, stop)."""
        return self._shutdown.is_set()

    def request_shutdown(self) -> None:
        """Make :meth:`serve` return (safe from signal handlers and callbacks)."""
        self._shutdown.set()

    async def serve(self) -> None:
        """Wait until :meth:`request_shutdown` or, with ``handle_signals=True``,
        SIGTERM/SIGINT; leaving the ``async with`` block then stops everything."""
        await self._shutdown.wait()

    async def _watch_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        # Installed before __aenter__ returns, so no early signal is missed.
        with self._signal_scope, anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
            task_status.started()
            async for signum in sigs:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                self._shutdown.set()
                return

    async def _run_root(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert self._root is not None
        started = False

        def mark() -> None:
            nonlocal started
            started = True
            task_status.started()

        max_restarts, period, backoff = self._root_intensity
        try:
            await run_instance(
                self._root,
                lambda: Supervisor(max_restarts=max_restarts, period=period, backoff=backoff),
                mark,
            )
        except Exception as exc:
            if not started:
                raise
            self.failure = unwrap(exc)
            log.critical("actor system %s: root supervisor failed; stopping", self.name,
                         exc_info=(type(self.failure), self.failure, self.failure.__traceback__))
            self._root.close("system failed")
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
        finally:
            self._root_done.set()

    # -- actors ------------------------------------------------------------

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        restart: Restart | str = Restart.PERMANENT,
        shutdown: float | str | None = 5.0,
        kind: str | None = None,
    ) -> ActorRef:
        """Start a top-level actor under the root supervisor and return its ref.

        ``factory`` is called for the first start and for every restart.
        Raises :class:`NameTaken` if ``name`` is in use, :class:`ChildStartError`
        if ``on_start`` fails.
        """
        if self._root is None or self._shutdown.is_set():
            raise ActorsError(f"actor system {self.name!r} is not running")
        if name is None:
            self._counter += 1
            name = f"{getattr(factory, '__name__', 'actor').lower()}-{self._counter}"
        if kind is None:
            kind = "supervisor" if isinstance(factory, type) and issubclass(factory, Supervisor) \
                else "worker"
        spec = ChildSpec(name, factory, restart=Restart(restart), shutdown=shutdown,
                         kind=kind, mailbox_size=mailbox_size)
        if name in self._cells:
            raise NameTaken(f"an actor named {name!r} already exists")
        return await start_child(self._root.ref, spec)

    def lookup(self, name: str) -> ActorRef:
        """The ref of the actor registered under ``name``; LookupError if none."""
        try:
            return self._cells[name].ref
        except KeyError:
            raise LookupError(f"no actor named {name!r} in system {self.name!r}") from None

    def names(self) -> list[str]:
        return list(self._cells)

    def _register(self, name: str, mailbox_size: int, parent: _Cell) -> _Cell:
        if name in self._cells:
            raise NameTaken(f"an actor named {name!r} already exists in system {self.name!r}")
        cell = _Cell(self, name, mailbox_size, parent)
        self._cells[name] = cell
        return cell

    def _unregister(self, cell: _Cell) -> None:
        if self._cells.get(cell.name) is cell:
            del self._cells[cell.name]
            self._retired["handled"] += cell.handled
            self._retired["failed"] += cell.failed
            self._retired["restarts"] += cell.restarts

    # -- introspection -----------------------------------------------------

    def subscribe(self, listener: Callable[[SupervisorEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every supervisor event; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: SupervisorEvent) -> None:
        self.events.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed", listener)

    def statistics(self) -> SystemStatistics:
        live = list(self._cells.values())
        return SystemStatistics(
            actors=len(live),
            handled=self._retired["handled"] + sum(c.handled for c in live),
            failed=self._retired["failed"] + sum(c.failed for c in live),
            restarts=self._retired["restarts"] + sum(c.restarts for c in live),
            dead_letters=self.dead_letters.count,
        )


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__name__}"


def run(
    main: Callable[..., Awaitable[T]], *args: Any, use_uvloop: bool | None = None
) -> T:
    """Run ``main(*args)`` on uvloop when available (or asked), else plain asyncio."""
    if use_uvloop is None:
        use_uvloop = uvloop_available()
        if not use_uvloop:
            log.info("uvloop is not installed: running on the plain asyncio event loop")
    return anyio.run(main, *args, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
