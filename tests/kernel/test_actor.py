"""Actors on their own: tell, ask, backpressure, timeouts, dead letters, hooks, statistics."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest

from actors.kernel import (
    Actor,
    ActorRef,
    ActorStopped,
    ActorSystem,
    AskTimeout,
    ChildStartError,
    Later,
    MailboxFull,
    NameTaken,
)

from .helpers import Boom, Journal, Worker, worker

pytestmark = pytest.mark.anyio


class Gate(Actor):
    """Blocks on an event before handling each message, so tests can fill its mailbox."""

    def __init__(self, gate: anyio.Event, seen: list[object]) -> None:
        self.gate = gate
        self.seen = seen

    async def receive(self, message: object) -> None:
        await self.gate.wait()
        self.seen.append(message)


async def test_ask_returns_the_handlers_value() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Worker("w"), name="w")
        assert await ref.ask({"x": 1}) == {"x": 1}
        assert system.lookup("w").name == "w"


async def test_ask_reraises_the_handlers_exception_and_the_actor_restarts() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(worker("w", journal), name="w")
        with pytest.raises(Boom, match="crashed on purpose"):
            await ref.ask("crash")
        assert await ref.ask("again") == "again"  # the same ref reaches the new instance
        stats = ref.statistics()
        assert (stats.handled, stats.failed, stats.restarts) == (1, 1, 1)
    assert journal.of("start") == ["w", "w"]


async def test_ask_times_out_with_a_clear_error() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Worker("slow"), name="slow")
        with pytest.raises(AskTimeout, match="slow.*0.05 s"):
            await ref.ask(("sleep", 1.0), timeout=0.05)


async def test_tell_nowait_raises_when_full_and_tell_waits_for_room() -> None:
    gate, seen = anyio.Event(), []
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Gate(gate, seen), name="gate", mailbox_size=2)
        ref.tell_nowait(0)  # taken by the actor, which then waits at the gate
        await anyio.sleep(0.01)
        ref.tell_nowait(1)
        ref.tell_nowait(2)
        with pytest.raises(MailboxFull):
            ref.tell_nowait(3)
        sent = anyio.Event()

        async def send_blocked() -> None:
            await ref.tell(3)
            sent.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_blocked)
            await anyio.sleep(0.05)
            assert not sent.is_set()  # backpressure: the sender is waiting
            assert ref.statistics().queued == 2
            gate.set()
        await ref.ask("sync")
        assert seen == [0, 1, 2, 3, "sync"]


async def test_ask_times_out_while_waiting_for_mailbox_room() -> None:
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Gate(gate, []), name="gate", mailbox_size=1)
        ref.tell_nowait(0)
        await anyio.sleep(0.01)
        ref.tell_nowait(1)
        with pytest.raises(AskTimeout):
            await ref.ask(2, timeout=0.05)
        gate.set()


async def test_messages_to_a_stopped_actor_become_dead_letters() -> None:
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Gate(gate, []), name="gate", mailbox_size=10)
        for i in range(5):
            ref.tell_nowait(i)
        await anyio.sleep(0.01)  # message 0 is in the handler, 1..4 queued
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.stop)
            await anyio.sleep(0.01)
            gate.set()
        assert not ref.alive
        await ref.tell("late")
        ref.tell_nowait("later")
        with pytest.raises(ActorStopped, match="gate"):
            await ref.ask("too late")
        letters = system.dead_letters
        assert letters.count_for("gate") == 4 + 3
        assert [d.message for d in letters.recent][-3:] == ["late", "later", "too late"]
        assert ref.statistics().handled == 1
        with pytest.raises(LookupError, match="gate"):
            system.lookup("gate")


async def test_hooks_run_in_order_and_on_stop_runs_at_shutdown() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        await system.spawn(worker("a", journal), name="a")
        await system.spawn(worker("b", journal), name="b")
    assert journal.entries == [("a", "start"), ("b", "start"), ("b", "stop"), ("a", "stop")]


async def test_a_failing_on_start_fails_spawn_with_the_cause() -> None:
    class Broken(Actor):
        async def on_start(self) -> None:
            raise Boom("no device")

    async with ActorSystem() as system:
        with pytest.raises(ChildStartError, match="broken.*no device") as info:
            await system.spawn(Broken, name="broken")
        assert isinstance(info.value.__cause__, Boom)
        assert "broken" not in system.names()


async def test_names_are_unique_and_refs_are_not_constructible() -> None:
    async with ActorSystem() as system:
        await system.spawn(lambda: Worker("x"), name="x")
        with pytest.raises(NameTaken, match="'x'"):
            await system.spawn(lambda: Worker("x"), name="x")
    with pytest.raises(TypeError, match="created by the runtime"):
        ActorRef()


async def test_background_tasks_end_with_their_actor() -> None:
    ticks: list[int] = []

    class Ticker(Actor):
        async def on_start(self) -> None:
            self.task_group.start_soon(self.tick)

        async def tick(self) -> None:
            while True:
                ticks.append(1)
                await anyio.sleep(0.001)

        async def receive(self, message: object) -> object:
            return message

    async with ActorSystem() as system:
        ref = await system.spawn(Ticker, name="ticker")
        await anyio.sleep(0.02)
        await ref.stop()
        count = len(ticks)
        await anyio.sleep(0.02)
        assert len(ticks) == count  # the loop_guard fixture also checks no task is left


async def test_a_crashing_background_task_crashes_its_actor() -> None:
    class Fragile(Actor):
        async def on_start(self) -> None:
            self.task_group.start_soon(self.fail_soon)

        async def fail_soon(self) -> None:
            await anyio.sleep(0.01)
            raise Boom("background")

        async def receive(self, message: object) -> object:
            return message

    async with ActorSystem(max_restarts=100) as system:
        ref = await system.spawn(Fragile, name="fragile")
        await anyio.sleep(0.1)
        assert ref.statistics().restarts >= 1
        exits = [e for e in system.events if e.kind == "child_exited"]
        assert isinstance(exits[0].reason, Boom)


class Deferring(Actor):
    """Replies later: each request waits on its own event, so replies may overtake."""

    def __init__(self) -> None:
        self.events: dict[str, anyio.Event] = {}
        self.log: list[str] = []

    async def receive(self, message: tuple[str, str]) -> object:
        verb, key = message
        if verb == "release":
            self.events.setdefault(key, anyio.Event()).set()
            return "released"
        if verb == "fail":
            return Later(self._fail(key))
        return Later(self._wait(key))

    async def _wait(self, key: str) -> str:
        await self.events.setdefault(key, anyio.Event()).wait()
        self.log.append(key)
        return f"done {key}"

    async def _fail(self, key: str) -> str:
        await anyio.lowlevel.checkpoint()
        raise ValueError(f"request {key} failed")


async def test_later_replies_let_the_actor_take_its_next_message() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Deferring, name="deferring")
        replies: dict[str, object] = {}

        async def ask(key: str) -> None:
            replies[key] = await ref.ask(("wait", key))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "a")
            tg.start_soon(ask, "b")
            await anyio.wait_all_tasks_blocked()
            # Both requests are pending, and the actor still answers.
            assert await ref.ask(("release", "b")) == "released"
            await anyio.wait_all_tasks_blocked()
            assert replies == {"b": "done b"}
            await ref.ask(("release", "a"))
        assert replies == {"a": "done a", "b": "done b"}
        # A failing later reply goes to its asker and does not crash the actor.
        with pytest.raises(ValueError, match="request x failed"):
            await ref.ask(("fail", "x"))
        stats = ref.statistics()
        assert (stats.failed, stats.restarts) == (0, 0)


async def stopped_while_asked(ref: ActorRef, message: object,
                              ready: Callable[[], Awaitable[object]]) -> object:
    """Ask ``message``, stop the actor once ``ready()`` returned; what the asker got."""
    outcome: list[object] = []

    async def ask() -> None:
        try:
            outcome.append(await ref.ask(message, timeout=None))
        except ActorStopped as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await ready()
        await ref.stop()
    return outcome[0]


async def test_a_pending_later_reply_fails_with_actor_stopped_when_the_actor_stops() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(Deferring, name="deferring")
        outcome = await stopped_while_asked(ref, ("wait", "never"), anyio.wait_all_tasks_blocked)
        assert isinstance(outcome, ActorStopped) and "stopped before it replied" in str(outcome)


class FinishingDeferrer(Actor):
    """Replies later and ends the instance with the same message: its later reply has
    not had a turn when the instance stops."""

    async def receive(self, message: object) -> object:
        self.finish()
        return Later(self._reply())

    async def _reply(self) -> str:
        return "never sent"


async def test_a_later_reply_that_never_started_fails_with_actor_stopped() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(FinishingDeferrer, name="finishing", restart="temporary")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... never awaited"
            with pytest.raises(ActorStopped, match="stopped before it replied"):
                await ref.ask("go", timeout=2)
            gc.collect()


class ShieldedDeferrer(Actor):
    """Replies later after a shielded wait (as a handler waits for its worker thread)."""

    def __init__(self, entered: anyio.Event, log: list[str]) -> None:
        self.entered = entered
        self.log = log

    async def receive(self, message: object) -> object:
        return Later(self._reply())

    async def _reply(self) -> str:
        with anyio.CancelScope(shield=True):
            self.entered.set()
            await anyio.sleep(0.05)
            self.log.append("shielded part done")
        await anyio.lowlevel.checkpoint()
        self.log.append("went on after the stop")
        return "replied"


async def test_stopping_waits_for_the_shielded_part_of_a_later_reply() -> None:
    entered, log = anyio.Event(), []
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: ShieldedDeferrer(entered, log), name="shielded")
        outcome = await stopped_while_asked(ref, "go", entered.wait)
        # The stop returned after the shielded wait, and cancelled what came next.
        assert log == ["shielded part done"]
        assert isinstance(outcome, ActorStopped)


class Promising(Actor):
    """Replies later with a bare future, settled by a later message (as a worker thread
    settles one through the event loop)."""

    def __init__(self) -> None:
        self.futures: dict[str, asyncio.Future[object]] = {}

    async def receive(self, message: tuple[str, str]) -> object:
        verb, key = message
        if verb == "promise":
            future = self.futures[key] = asyncio.get_running_loop().create_future()
            return Later(future)
        if verb == "keep":
            self.futures[key].set_result(f"kept {key}")
        elif verb == "break":
            self.futures[key].set_exception(ValueError(f"broke {key}"))
        return verb


async def test_a_later_future_becomes_the_reply_and_is_cancelled_when_the_actor_stops(
        caplog: pytest.LogCaptureFixture) -> None:
    async with ActorSystem() as system:
        promising = Promising()
        ref = await system.spawn(lambda: promising, name="promising")
        replies: dict[str, object] = {}

        async def ask(key: str) -> None:
            try:
                replies[key] = await ref.ask(("promise", key), timeout=None)
            except Exception as exc:  # what the asker got, whatever it is
                replies[key] = exc

        async with anyio.create_task_group() as tg:
            for key in "abc":
                tg.start_soon(ask, key)
            await anyio.wait_all_tasks_blocked()
            await ref.ask(("keep", "b"))
            await ref.ask(("break", "a"))
            await anyio.wait_all_tasks_blocked()
            assert replies == {"b": "kept b", "a": replies["a"]}
            assert isinstance(replies["a"], ValueError) and str(replies["a"]) == "broke a"
            await ref.tell(("promise", "told"))
            await ref.ask(("break", "told"))  # a tell's failure is logged
            await ref.stop()
        assert isinstance(replies["c"], ActorStopped) and promising.futures["c"].cancelled()
        stats = ref.statistics()
        assert stats.failed == 0
    assert "a later reply to a tell failed: broke told" in caplog.text
