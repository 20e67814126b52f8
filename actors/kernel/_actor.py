"""Actor, ActorRef and the cell that runs successive instances of one actor.

A *cell* is the runtime's record of one named actor: its bounded mailbox, its
statistics and the currently running instance. The cell outlives instances:
when a supervisor restarts a crashed actor, the fresh instance (made by the
child's factory) consumes the same mailbox, so messages queued during the
restart are kept and every :class:`ActorRef` stays valid. The message whose
handling crashed the actor is not redelivered (it is counted as failed).

Messages travel as ``(message, reply)`` tuples: ``reply`` is ``None`` for a
``tell`` and a future for an ``ask``. System messages (stop, child exits,
supervisor requests) go through a separate unbounded lane that the loop reads
before user messages, so a full mailbox never delays a stop.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc

from ._errors import ActorStopped, AskTimeout, MailboxFull
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from ._system import ActorSystem

log = logging.getLogger("actors.kernel")

DEFAULT_MAILBOX_SIZE = 1000
DEFAULT_ASK_TIMEOUT = 5.0


class _Stop:
    """System message: finish the current message, then stop (normal exit)."""

    __slots__ = ()


STOP = _Stop()


class Later:
    """A reply that comes later: ``receive`` returns ``Later(coroutine)`` to take its
    next message at once while ``coroutine`` runs in a task of the instance's.
    ``Later(future)`` (an asyncio future, say from a worker thread's queue) needs no
    task: the future's outcome becomes the reply, and stopping the instance cancels it.

    The asker gets the coroutine's result, or its exception (which does not crash
    the actor: the request failed, not the actor), or :class:`ActorStopped` when
    the instance stops first. For a ``tell`` the coroutine runs all the same and
    its exception is logged. Erlang's ``{noreply, State}`` and ``gen_server:reply``:
    for requests that wait on something else (a worker thread, a batch) and may
    overlap.
    """

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class _Laters:
    """The :class:`Later` coroutines of one instance, each in an asyncio task of its own.

    Not in the instance's anyio task group: spawning there (a task handle, a
    wrapper coroutine, a cancel scope and a done callback per task) took about
    0.11 ms from ``receive`` to the handler's first line on the path of each
    inference request here (cold caches after a model run), against 0.02-0.05 ms
    for an asyncio task in a cancel scope. Each coroutine runs inside an anyio
    cancel scope, which :meth:`close` cancels when the instance stops, so
    cancellation keeps anyio's meaning (shielded sections inside a handler,
    such as waiting for a worker thread, still finish) and :meth:`close` waits
    for every task to end, as the task group did.
    """

    __slots__ = ("_closed", "_futures", "_name", "_scopes", "_tasks")

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self._scopes: set[anyio.CancelScope] = set()
        self._futures: dict[asyncio.Future[Any], asyncio.Future[Any] | None] = {}
        self._closed = False

    def start(self, later: Later, reply: asyncio.Future[Any] | None) -> None:
        awaitable = later.awaitable
        if isinstance(awaitable, asyncio.Future):
            # Nothing to run: the future's outcome is the reply, copied when it is done.
            self._futures[awaitable] = reply
            awaitable.add_done_callback(self._settled)
            return
        task = asyncio.get_running_loop().create_task(self._run(later, reply))
        self._tasks.add(task)
        # _run hands every Exception to the asker; KeyboardInterrupt and SystemExit
        # leave the event loop itself, as asyncio does with any task's.
        task.add_done_callback(self._tasks.discard)

    async def _run(self, later: Later, reply: asyncio.Future[Any] | None) -> None:
        # One frame (no helper coroutine): every resumption of this task passes through it.
        if self._closed:  # the instance stopped before this task got its first turn
            close = getattr(later.awaitable, "close", None)
            if close is not None:  # a coroutine never started: no "never awaited" warning
                close()
            self._stopped(reply)
            return
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                result = await later.awaitable
            except anyio.get_cancelled_exc_class():
                self._stopped(reply)
                raise
            except Exception as exc:
                self._failed(reply, exc)
                return
            finally:
                self._scopes.discard(scope)
        if not scope.cancelled_caught and reply is not None and not reply.done():
            reply.set_result(result)

    def _settled(self, future: asyncio.Future[Any]) -> None:
        reply = self._futures.pop(future, None)
        if future.cancelled():
            self._stopped(reply)
        elif (exc := future.exception()) is not None:
            self._failed(reply, exc)
        elif reply is not None and not reply.done():
            reply.set_result(future.result())

    def _failed(self, reply: asyncio.Future[Any] | None, exc: BaseException) -> None:
        if reply is None:
            log.warning("actor %s: a later reply to a tell failed: %s", self._name, exc)
        elif not reply.done():
            reply.set_exception(exc)

    def _stopped(self, reply: asyncio.Future[Any] | None) -> None:
        if reply is not None and not reply.done():
            reply.set_exception(ActorStopped(f"actor {self._name} stopped before it replied"))

    async def close(self) -> None:
        """Cancel what is still running and wait until every task has ended."""
        self._closed = True
        futures, self._futures = self._futures, {}
        for future, reply in futures.items():
            future.cancel()
            self._stopped(reply)
        for scope in self._scopes:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            while self._tasks:
                await asyncio.wait(set(self._tasks))


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    name: str
    state: str
    queued: int
    mailbox_size: int
    handled: int
    failed: int
    dead_letters: int
    restarts: int


class Actor:
    """Base class of every actor: override :meth:`receive` and, if needed, the hooks.

    An instance handles one message at a time, so its attributes need no locks.
    Exceptions raised by :meth:`receive` are re-raised to an ``ask`` caller and
    also crash the actor: its supervisor decides whether it is restarted.
    """

    #: Seconds ``on_stop`` may take before it is cancelled.
    stop_timeout: ClassVar[float] = 5.0

    _cell: _Cell
    _task_group: anyio.abc.TaskGroup

    async def on_start(self) -> None:
        """Called before the first message; the actor counts as started when it returns."""

    async def on_stop(self) -> None:
        """Called once after the last message, on normal stop, crash or shutdown."""

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value is the reply to an ``ask``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement receive()")

    @property
    def ref(self) -> ActorRef:
        return self._cell.ref

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        """A task group owned by this instance: its tasks end when the instance stops,
        and an exception in one of them crashes the actor."""
        return self._task_group

    def stop(self) -> None:
        """Ask to stop for good after the current message (the supervisor will not restart it)."""
        self._cell.request_termination()

    def finish(self) -> None:
        """End this instance normally after the current message; the supervisor then
        applies the restart type (permanent restarts it, transient and temporary do not)."""
        self._cell.post_system(STOP)

    async def handle_system(self, message: Any) -> bool:
        """Handle a system message; return False to stop. Supervisors extend this."""
        if message is STOP:
            return False
        raise TypeError(f"{self.name}: unknown system message {message!r}")


class _Cell:
    """The runtime's record of one named actor (see the module docstring)."""

    __slots__ = (
        "failed",
        "handled",
        "mailbox",
        "name",
        "parent",
        "ref",
        "restarts",
        "state",
        "sysq",
        "system",
    )

    def __init__(
        self, system: ActorSystem, name: str, mailbox_size: int, parent: _Cell | None
    ) -> None:
        self.system = system
        self.name = name
        self.parent = parent
        self.mailbox = Mailbox(mailbox_size)
        self.sysq: deque[Any] = deque()
        self.handled = 0
        self.failed = 0
        self.restarts = 0
        self.state = "new"
        ref = object.__new__(ActorRef)
        ref._cell = self
        self.ref = ref

    def post_system(self, message: Any) -> None:
        self.sysq.append(message)
        self.mailbox.wake_receiver()

    def request_termination(self) -> None:
        """Stop for good: through the parent supervisor when there is one."""
        if self.parent is not None:
            from ._supervisor import TerminateChild

            self.parent.post_system(TerminateChild(self.name, None))
        else:
            self.post_system(STOP)

    def dead_letter(self, message: Any, reply: asyncio.Future[Any] | None, reason: str) -> None:
        self.system.dead_letters.record(self.name, message, reason)
        if reply is not None and not reply.done():
            reply.set_exception(ActorStopped(f"actor {self.name!r} is stopped ({reason})"))

    def close(self, reason: str) -> None:
        """Close the mailbox for good; whatever is queued becomes dead letters."""
        for message, reply in self.mailbox.close():
            self.dead_letter(message, reply, reason)
        self.state = "stopped"

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            state=self.state,
            queued=len(self.mailbox),
            mailbox_size=self.mailbox.statistics().max_size,
            handled=self.handled,
            failed=self.failed,
            dead_letters=self.system.dead_letters.count_for(self.name),
            restarts=self.restarts,
        )


def unwrap(exc: BaseException) -> BaseException:
    """The single real error inside (nested) one-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Deadlines:
    """Ask timeouts without a loop timer per ask.

    One FIFO per distinct timeout value: its deadlines only grow, so only its
    head needs a timer. Answered asks are dropped from the head as new ones
    arrive, so a FIFO holds about as many entries as there are asks in flight.
    A timer per ask (``call_at`` then ``cancel``) cost about 40% of an ask.
    """

    __slots__ = ("_fifos", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fifos: dict[float, _DeadlineFifo] = {}

    def add(self, timeout: float, reply: asyncio.Future[Any], name: str) -> None:
        fifo = self._fifos.get(timeout)
        if fifo is None:
            fifo = self._fifos[timeout] = _DeadlineFifo(self._loop, timeout)
        fifo.add(reply, name)


class _DeadlineFifo:
    __slots__ = ("_handle", "_items", "_loop", "_timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._items: deque[tuple[float, asyncio.Future[Any], str]] = deque()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, reply: asyncio.Future[Any], name: str) -> None:
        items = self._items
        while items and items[0][1].done():
            items.popleft()
        items.append((self._loop.time() + self._timeout, reply, name))
        if self._handle is None:
            self._handle = self._loop.call_at(items[0][0], self._expire)

    def _expire(self) -> None:
        self._handle = None
        items = self._items
        now = self._loop.time()
        while items and (items[0][1].done() or items[0][0] <= now):
            _, reply, name = items.popleft()
            if not reply.done():
                reply.set_exception(
                    AskTimeout(f"no reply from actor {name!r} within {self._timeout:g} s"))
        if items:
            self._handle = self._loop.call_at(items[0][0], self._expire)


class ActorRef:
    """The only handle to an actor that others get; made by the runtime, never by users."""

    __slots__ = ("_cell",)
    _cell: _Cell

    def __init__(self) -> None:
        raise TypeError("ActorRef is created by the runtime: use ActorSystem.spawn or lookup")

    @property
    def name(self) -> str:
        return self._cell.name

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name} {self._cell.state}>"

    async def tell(self, message: Any) -> None:
        """Send without waiting for a reply; waits while the mailbox is full (backpressure).

        A message to a stopped actor goes to the dead letters (counted and logged).
        """
        mailbox = self._cell.mailbox
        try:
            mailbox.send_nowait((message, None))
            return
        except MailboxFull:
            pass
        except ActorStopped:
            self._cell.dead_letter(message, None, "stopped")
            return
        try:
            await mailbox.send((message, None))
        except ActorStopped:
            self._cell.dead_letter(message, None, "stopped")

    def tell_nowait(self, message: Any) -> None:
        """Send without waiting; raises :class:`MailboxFull` when the mailbox is full."""
        try:
            self._cell.mailbox.send_nowait((message, None))
        except ActorStopped:
            self._cell.dead_letter(message, None, "stopped")

    async def ask(self, message: Any, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send and wait for the reply (the handler's return value).

        Raises the handler's own exception if it failed, :class:`AskTimeout` if no
        reply came within ``timeout`` seconds (waiting for mailbox room included),
        and :class:`ActorStopped` if the actor is stopped.
        """
        cell = self._cell
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        envelope = (message, reply)
        deadline = math.inf
        if timeout is not None and not math.isinf(timeout):
            deadline = loop.time() + timeout
            deadlines = cell.system._deadlines
            if deadlines is None or deadlines._loop is not loop:
                deadlines = cell.system._deadlines = _Deadlines(loop)
            deadlines.add(timeout, reply, cell.name)
        try:
            cell.mailbox.send_nowait(envelope)
        except MailboxFull:
            await self._send_before(envelope, reply, deadline)
        except ActorStopped:
            cell.dead_letter(message, reply, "stopped")
        return await reply

    async def _send_before(
        self, envelope: tuple[Any, Any], reply: asyncio.Future[Any], deadline: float
    ) -> None:
        # Wait for mailbox room until the ask's deadline; at the deadline the
        # timer has set AskTimeout on the reply, which the caller then raises.
        with anyio.move_on_after(deadline - asyncio.get_running_loop().time()):
            try:
                await self._cell.mailbox.send(envelope)
            except ActorStopped:
                self._cell.dead_letter(envelope[0], reply, "stopped")

    async def stop(self) -> None:
        """Stop the actor for good and wait until it has stopped.

        Queued messages become dead letters. A supervised actor is removed from
        its supervisor, which waits for it as the child's ``shutdown`` says.
        """
        cell = self._cell
        if cell.parent is not None:
            from ._supervisor import TerminateChild

            done = asyncio.get_running_loop().create_future()
            cell.parent.post_system(TerminateChild(cell.name, done))
            await done
        else:
            cell.post_system(STOP)

    def statistics(self) -> ActorStatistics:
        return self._cell.statistics()

    @property
    def alive(self) -> bool:
        return not self._cell.mailbox.closed


async def run_instance(
    cell: _Cell, factory: Callable[[], Actor], started: Callable[[], None]
) -> None:
    """Run one instance of ``cell``'s actor: start hook, message loop, stop hook.

    ``started`` is called once ``on_start`` returned. Exceptions propagate to the
    caller (the supervisor's child runner), which reports them; none is swallowed.
    """
    actor = factory()
    if not isinstance(actor, Actor):
        raise TypeError(f"factory of actor {cell.name!r} returned {actor!r}, not an Actor")
    actor._cell = cell
    cell.state = "starting"
    # A stop request meant for the previous instance (it crashed first) is stale.
    if STOP in cell.sysq:
        cell.sysq = deque(m for m in cell.sysq if m is not STOP)
    try:
        await _run_started(cell, actor, started)
    except BaseExceptionGroup as group:
        # The instance's task group wraps errors; supervisors and callers want
        # the one real error (its traceback is kept).
        inner = unwrap(group)
        if isinstance(inner, Exception):
            raise inner from None
        raise


async def _run_started(cell: _Cell, actor: Actor, started: Callable[[], None]) -> None:
    async with anyio.create_task_group() as tg:
        actor._task_group = tg
        laters = _Laters(cell.name)
        await actor.on_start()
        try:
            cell.state = "running"
            started()
            await _message_loop(cell, actor, laters)
            cell.state = "stopping"
        finally:
            with anyio.move_on_after(actor.stop_timeout, shield=True) as scope:
                await actor.on_stop()
            if scope.cancelled_caught:
                log.warning("actor %s: on_stop ran over %g s and was cancelled",
                            cell.name, actor.stop_timeout)
            await laters.close()
            # The instance's own background tasks end with it.
            tg.cancel_scope.cancel()


async def _message_loop(cell: _Cell, actor: Actor, laters: _Laters) -> None:
    # The hot path: locals instead of attribute lookups, no future per message.
    mailbox = cell.mailbox
    items = mailbox._items
    sysq = cell.sysq
    receive = actor.receive
    get = mailbox.get_nowait
    while True:
        if sysq:
            if not await actor.handle_system(sysq.popleft()):
                return
            continue
        if items:
            message, reply = get()
            if reply is None:
                try:
                    result = await receive(message)
                except Exception:
                    cell.failed += 1
                    raise
                if type(result) is Later:
                    laters.start(result, None)
            else:
                try:
                    result = await receive(message)
                except Exception as exc:
                    cell.failed += 1
                    if not reply.done():
                        reply.set_exception(exc)
                    raise
                if type(result) is Later:
                    laters.start(result, reply)
                elif not reply.done():
                    reply.set_result(result)
            cell.handled += 1
        elif mailbox.closed:
            return
        else:
            await mailbox.wait_not_empty()
