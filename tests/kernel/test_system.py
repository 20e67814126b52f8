"""The actor system as a process: uvloop, signals, graceful shutdown."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from actors.kernel import Actor, ActorSystem, run

    class Noisy(Actor):
        async def on_stop(self):
            print("stopped", self.name, flush=True)
        async def receive(self, message):
            return message

    async def main():
        async with ActorSystem(handle_signals=True) as system:
            await system.spawn(Noisy, name="first")
            await system.spawn(Noisy, name="second")
            loop = type(asyncio.get_running_loop()).__module__
            print("ready", loop, flush=True)
            await system.serve()
        print("clean exit", flush=True)

    run(main, use_uvloop=sys.argv[1] == "uvloop")
""")


# armv7l has no uvloop wheel: there the kernel runs on plain asyncio only, and a script that
# asks for uvloop cannot start (these two cases failed under the armhf emulator).
NO_UVLOOP = pytest.mark.skipif(importlib.util.find_spec("uvloop") is None,
                               reason="uvloop is not installed (no wheel for armv7l)")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("loop", [pytest.param("uvloop", marks=NO_UVLOOP), "asyncio"])
def test_a_signal_stops_every_actor_in_reverse_order(sig: signal.Signals, loop: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, loop], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.startswith("ready"), proc.stderr.read() if proc.stderr else ""
    assert ("uvloop" in ready) == (loop == "uvloop")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["stopped second", "stopped first", "clean exit"]
