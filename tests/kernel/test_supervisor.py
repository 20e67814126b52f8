"""Supervisors: strategies, restart types, ordering, intensity, backoff, shutdown timeouts."""

from __future__ import annotations

import time

import anyio
import pytest

from actors.kernel import (
    Actor,
    ActorStopped,
    ActorSystem,
    Backoff,
    ChildSpec,
    ChildSpecError,
    ChildStartError,
    MaxRestartIntensity,
    Restart,
    Strategy,
    Supervisor,
    SystemFailure,
)

from .helpers import Boom, Journal, worker

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.001, maximum=0.01, reset_after=0.0)


def three(journal: Journal, **kw: object) -> list[ChildSpec]:
    return [ChildSpec(n, worker(n, journal), **kw) for n in ("a", "b", "c")]  # type: ignore[arg-type]


async def wait_running(system: ActorSystem, *names: str) -> None:
    """Wait until each named actor answers (a restarted subtree has new cells)."""
    with anyio.fail_after(2):
        for name in names:
            while True:
                try:
                    await system.lookup(name).ask("ping")
                    break
                except (LookupError, ActorStopped):
                    await anyio.sleep(0.005)


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        (Strategy.ONE_FOR_ONE, ["b"]),
        (Strategy.REST_FOR_ONE, ["b", "c"]),
        (Strategy.ONE_FOR_ALL, ["a", "b", "c"]),
    ],
)
async def test_strategy_decides_who_restarts(strategy: Strategy, restarted: list[str]) -> None:
    journal = Journal()
    async with ActorSystem() as system:
        await system.spawn(lambda: Supervisor(three(journal), strategy=strategy), name="sup")
        assert journal.of("start") == ["a", "b", "c"]
        journal.entries.clear()
        with pytest.raises(Boom):
            await system.lookup("b").ask("crash")
        await wait_running(system, "a", "b", "c")
        # The crashed child stopped first; then the rest of the affected set
        # stops in reverse start order, and the whole set starts in order.
        stopped = ["b", *(n for n in reversed(restarted) if n != "b")]
        assert journal.of("stop") == stopped
        assert journal.of("start") == restarted
        journal.entries.clear()
    assert journal.of("stop") == ["c", "b", "a"]


async def test_restart_types() -> None:
    journal = Journal()
    specs = [
        ChildSpec("perm", worker("perm", journal), restart=Restart.PERMANENT),
        ChildSpec("trans", worker("trans", journal), restart=Restart.TRANSIENT),
        ChildSpec("trans2", worker("trans2", journal), restart=Restart.TRANSIENT),
        ChildSpec("temp", worker("temp", journal), restart=Restart.TEMPORARY),
    ]
    async with ActorSystem() as system:
        await system.spawn(lambda: Supervisor(specs, max_restarts=10, backoff=FAST), name="sup")
        # Normal exits: only the permanent child comes back.
        for name in ("perm", "trans"):
            assert await system.lookup(name).ask("finish") == "finishing"
        # Abnormal exits: transient comes back, temporary does not.
        for name in ("trans2", "temp"):
            with pytest.raises(Boom):
                await system.lookup(name).ask("crash")
        with anyio.fail_after(2):
            while journal.count("perm", "start") < 2 or journal.count("trans2", "start") < 2:
                await anyio.sleep(0.005)
        await anyio.sleep(0.02)
        assert sorted(system.names()) == ["perm", "sup", "trans2"]
        assert journal.count("trans", "start") == 1
        assert journal.count("temp", "start") == 1


async def test_children_start_in_dependency_order_and_stop_in_reverse() -> None:
    journal = Journal()
    specs = [
        ChildSpec("app", worker("app", journal), depends_on=("model", "runtime")),
        ChildSpec("model", worker("model", journal), depends_on="runtime"),
        ChildSpec("runtime", worker("runtime", journal)),
        ChildSpec("logger", worker("logger", journal)),
    ]
    async with ActorSystem() as system:
        await system.spawn(lambda: Supervisor(specs), name="sup")
        assert journal.of("start") == ["runtime", "model", "app", "logger"]
    assert journal.of("stop") == ["logger", "app", "model", "runtime"]


async def test_rest_for_one_restarts_the_dependents_of_a_crashed_child() -> None:
    journal = Journal()
    specs = [
        ChildSpec("app", worker("app", journal), depends_on="runtime"),
        ChildSpec("runtime", worker("runtime", journal)),
        ChildSpec("other", worker("other", journal)),
    ]
    async with ActorSystem() as system:
        await system.spawn(
            lambda: Supervisor(specs, strategy=Strategy.REST_FOR_ONE), name="sup")
        journal.entries.clear()
        with pytest.raises(Boom):
            await system.lookup("runtime").ask("crash")
        await wait_running(system, "runtime", "app", "other")
        assert journal.of("stop") == ["runtime", "other", "app"]  # crashed, then reverse order
        assert journal.of("start") == ["runtime", "app", "other"]


async def test_one_for_one_restarts_a_child_with_what_it_restarts_with() -> None:
    journal = Journal()
    specs = [
        ChildSpec("runtime", worker("runtime", journal)),
        ChildSpec("model", worker("model", journal), depends_on="runtime",
                  restart_with="runtime"),
        ChildSpec("app", worker("app", journal), depends_on=("model", "runtime"),
                  restart_with="model"),
        ChildSpec("soft", worker("soft", journal), depends_on="runtime"),
        ChildSpec("other", worker("other", journal)),
    ]
    async with ActorSystem() as system:
        await system.spawn(lambda: Supervisor(specs, strategy=Strategy.ONE_FOR_ONE), name="sup")
        journal.entries.clear()
        with pytest.raises(Boom):
            await system.lookup("runtime").ask("crash")
        await wait_running(system, "runtime", "model", "app", "soft", "other")
        # The edges, transitively; a dependent without the edge and an unrelated
        # child keep running.
        assert journal.of("stop") == ["runtime", "app", "model"]
        assert journal.of("start") == ["runtime", "model", "app"]
        journal.entries.clear()
        with pytest.raises(Boom):
            await system.lookup("app").ask("crash")
        await wait_running(system, "app")
        assert journal.of("start") == ["app"]


def test_bad_child_specs_are_refused_with_the_child_named() -> None:
    def make() -> Actor:
        return Actor()

    with pytest.raises(ChildSpecError, match="child 'x': restart must be one of"):
        ChildSpec("x", make, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ChildSpecError, match="child 'x': shutdown=None"):
        ChildSpec("x", make, shutdown=None)
    with pytest.raises(ChildSpecError, match="dependency cycle a -> b -> a"):
        Supervisor([ChildSpec("a", make, depends_on="b"), ChildSpec("b", make, depends_on="a")])
    with pytest.raises(ChildSpecError, match="'a' depends on 'zz', which is not a child"):
        Supervisor([ChildSpec("a", make, depends_on="zz")])
    with pytest.raises(ChildSpecError, match="two children have the id 'a'"):
        Supervisor([ChildSpec("a", make), ChildSpec("a", make)])
    with pytest.raises(ChildSpecError, match="restart_with names 'b', which it does not depend"):
        ChildSpec("a", make, restart_with="b")


async def test_a_start_failure_stops_the_started_children_in_reverse() -> None:
    journal = Journal()

    class Broken(Actor):
        async def on_start(self) -> None:
            raise Boom("cannot start")

    specs = [*three(journal), ChildSpec("broken", Broken)]
    async with ActorSystem() as system:
        with pytest.raises(ChildStartError, match="'sup'.*failed to start.*'broken'"):
            await system.spawn(lambda: Supervisor(specs), name="sup")
        assert journal.of("stop") == ["c", "b", "a"]
        assert system.names() == []


async def test_intensity_escalates_to_the_parent_which_restarts_the_subtree() -> None:
    journal = Journal()

    def subtree() -> Supervisor:
        return Supervisor(three(journal), max_restarts=2, period=10, backoff=FAST)

    async with ActorSystem(max_restarts=5) as system:
        await system.spawn(subtree, name="sub", kind="supervisor", shutdown=None)
        for _ in range(3):
            with pytest.raises(Boom):
                await system.lookup("b").ask("crash")
            await wait_running(system, "a", "b", "c")
        kinds = [(e.kind, e.supervisor, e.child) for e in system.events]
        assert ("max_intensity", "sub", "b") in kinds
        exited = [e for e in system.events if e.kind == "child_exited" and e.child == "sub"]
        assert isinstance(exited[0].reason, MaxRestartIntensity)
        assert "more than 2 restarts" in str(exited[0].reason)
        # The whole subtree was stopped (reverse order) and started afresh.
        assert journal.count("a", "start") == 2
        assert journal.count("c", "start") == 2


async def test_root_escalation_fails_the_system_with_the_reason() -> None:
    journal = Journal()
    with pytest.raises(SystemFailure, match="root supervisor failed") as info:
        async with ActorSystem(max_restarts=1, period=10) as system:
            await system.spawn(worker("w", journal), name="w")
            for _ in range(2):
                try:
                    await system.lookup("w").ask("crash")
                except (Boom, LookupError):
                    pass
                await anyio.sleep(0.05)
            await anyio.sleep(10)  # cancelled by the failure
    assert isinstance(info.value.__cause__, MaxRestartIntensity)
    assert journal.of("stop") == ["w", "w"]


async def test_consecutive_restarts_back_off_exponentially() -> None:
    backoff = Backoff(initial=0.02, factor=2.0, maximum=1.0, jitter=0.0, reset_after=10)
    journal = Journal()
    async with ActorSystem() as system:
        await system.spawn(
            lambda: Supervisor([ChildSpec("w", worker("w", journal))], max_restarts=10,
                               backoff=backoff), name="sup")
        for _ in range(4):
            with pytest.raises(Boom):
                await system.lookup("w").ask("crash", timeout=2)
            await wait_running(system, "w")
        restarts = [e.backoff for e in system.events if e.kind == "child_restarting"]
        assert restarts == [0.0, 0.02, 0.04, 0.08]


async def test_a_failed_restart_is_retried_after_backoff() -> None:
    attempts: list[float] = []

    class FlakyStart(Actor):
        async def on_start(self) -> None:
            attempts.append(time.monotonic())
            if 2 <= len(attempts) <= 3:
                raise Boom(f"start attempt {len(attempts)}")

        async def receive(self, message: object) -> object:
            if message == "crash":
                raise Boom("crash")
            return message

    async with ActorSystem() as system:
        await system.spawn(
            lambda: Supervisor([ChildSpec("f", FlakyStart)], max_restarts=5, backoff=FAST),
            name="sup")
        with pytest.raises(Boom):
            await system.lookup("f").ask("crash")
        await wait_running(system, "f")
        assert len(attempts) == 4
        errors = [e for e in system.events if e.kind == "start_error"]
        assert [str(e.reason) for e in errors] == ["start attempt 2", "start attempt 3"]


async def test_shutdown_waits_then_cancels_a_child_that_ignores_stop() -> None:
    class Stubborn(Actor):
        stop_timeout = 0.05

        async def receive(self, message: object) -> object:
            await anyio.sleep(30)  # busy in a handler: only cancellation ends it
            return message

        async def on_stop(self) -> None:
            await anyio.sleep(30)  # and a stop hook that overruns its own timeout

    class Shielded(Actor):
        cleaned = False

        async def receive(self, message: object) -> object:
            # Ignores cancellation for a while, then finishes its work.
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.3)
            Shielded.cleaned = True
            return message

    specs = [
        ChildSpec("stubborn", Stubborn, shutdown=0.1),
        ChildSpec("shielded", Shielded, shutdown=0.05),
    ]
    async with ActorSystem() as system:
        await system.spawn(lambda: Supervisor(specs), name="sup", kind="supervisor",
                           shutdown=None)
        system.lookup("stubborn").tell_nowait("work")
        system.lookup("shielded").tell_nowait("work")
        await anyio.sleep(0.01)
        began = time.monotonic()
    took = time.monotonic() - began
    assert Shielded.cleaned
    # shielded: 0.05 s wait then cancel, which waits out its 0.3 s shield;
    # stubborn: 0.1 s, cancel, then its on_stop is cut at 0.05 s.
    assert 0.3 <= took < 2.0
    errors = [e.child for e in system.events if e.kind == "shutdown_error"]
    assert errors == ["shielded", "stubborn"]


async def test_brutal_shutdown_cancels_at_once() -> None:
    class Busy(Actor):
        async def receive(self, message: object) -> object:
            await anyio.sleep(30)
            return message

    async with ActorSystem() as system:
        await system.spawn(lambda: Supervisor([ChildSpec("busy", Busy, shutdown="brutal")]),
                           name="sup")
        system.lookup("busy").tell_nowait("x")
        await anyio.sleep(0.01)
        began = time.monotonic()
        await system.lookup("sup").stop()
        assert time.monotonic() - began < 0.5
        assert system.events[-1].kind != "shutdown_error"


async def test_messages_queued_during_a_restart_are_kept() -> None:
    journal = Journal()
    async with ActorSystem() as system:
        ref = await system.spawn(worker("w", journal), name="w")
        ref.tell_nowait("crash")
        for i in range(10):
            ref.tell_nowait(i)
        assert await ref.ask("last") == "last"
        stats = ref.statistics()
        assert (stats.handled, stats.failed, stats.dead_letters) == (11, 1, 0)
