"""Fault injection: random crashes across a tree of 1,000 actors; the tree must end
consistent and every message must be accounted for (handled, failed or dead-lettered)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from actors.kernel import (
    Actor,
    ActorStopped,
    ActorSystem,
    Backoff,
    ChildSpec,
    MailboxFull,
    Strategy,
    Supervisor,
)

pytestmark = pytest.mark.anyio

GROUPS = 10
PER_GROUP = 100
STRATEGIES = [Strategy.ONE_FOR_ONE, Strategy.REST_FOR_ONE, Strategy.ONE_FOR_ALL]


class Counting(Actor):
    """Counts what it handled per instance; 'crash' raises."""

    def __init__(self, handled: Counter[str]) -> None:
        self.handled = handled

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name}: injected crash")
        self.handled[self.name] += 1
        if message == "yield":
            await anyio.lowlevel.checkpoint()
        return message


def tree(handled: Counter[str]) -> list[ChildSpec]:
    groups = []
    for g in range(GROUPS):
        workers = [
            ChildSpec(f"w{g}-{i}", lambda: Counting(handled), mailbox_size=50)
            for i in range(PER_GROUP)
        ]
        strategy = STRATEGIES[g % len(STRATEGIES)]
        groups.append(ChildSpec(
            f"g{g}",
            lambda workers=workers, strategy=strategy: Supervisor(
                workers, strategy=strategy, max_restarts=20, period=0.5,
                backoff=Backoff(initial=0.001, maximum=0.02)),
            kind="supervisor", shutdown=None,
        ))
    return groups


@pytest.mark.slow
async def test_random_crashes_in_a_tree_of_1000_actors() -> None:
    rng = random.Random(7)
    handled: Counter[str] = Counter()
    sent = 0
    crashes = 0
    refused = 0  # tell_nowait that found a full mailbox: never sent, not counted
    names = [f"w{g}-{i}" for g in range(GROUPS) for i in range(PER_GROUP)]
    async with ActorSystem(max_restarts=1000, period=1.0) as system:
        await system.spawn(
            lambda: Supervisor(tree(handled), max_restarts=1000, period=1.0),
            name="top", kind="supervisor", shutdown=None)
        assert system.statistics().actors == 1 + GROUPS + GROUPS * PER_GROUP
        with anyio.move_on_after(1.5):
            while True:
                for _ in range(200):
                    name = rng.choice(names)
                    try:
                        ref = system.lookup(name)
                    except LookupError:
                        continue  # its group is being restarted right now
                    message: Any = "crash" if rng.random() < 0.02 else rng.choice(["m", "yield"])
                    try:
                        ref.tell_nowait(message)
                    except MailboxFull:
                        refused += 1
                        continue
                    sent += 1
                    crashes += message == "crash"
                await anyio.lowlevel.checkpoint()
        # Let the tree settle: every worker answers again.
        with anyio.fail_after(20):
            for name in names:
                while True:
                    try:
                        ref = system.lookup(name)
                    except LookupError:
                        await anyio.sleep(0.01)
                        continue
                    sent += 1  # an ask to a stopping actor is sent, then dead-lettered
                    try:
                        await ref.ask("m")
                        break
                    except ActorStopped:
                        await anyio.sleep(0.01)
        stats = system.statistics()
        top = system.lookup("top")
        assert top.statistics().state == "running"
        for g in range(GROUPS):
            assert system.lookup(f"g{g}").statistics().state == "running"
        assert sorted(system.names()) == sorted(["top", *(f"g{g}" for g in range(GROUPS)), *names])
        assert all(system.lookup(n).statistics().queued == 0 for n in names)
    assert crashes > 10
    assert stats.restarts > 0
    # Every sent message is accounted for: handled, failed (the crashing ones)
    # or dead-lettered (queued in a subtree that was restarted as a whole).
    dead = system.dead_letters.count
    assert stats.handled == sum(handled.values())
    assert stats.handled + stats.failed + dead == sent, (stats, dead, sent, refused)
