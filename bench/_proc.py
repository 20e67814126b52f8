"""Whole-process figures, measured from outside with the standard library only.

A child interpreter is started with :func:`os.posix_spawn` and reaped with
:func:`os.wait4`, whose resource usage is that one child's: its CPU time and
its peak resident set (``ru_maxrss``). (``getrusage(RUSAGE_CHILDREN)`` would do
for CPU time as a delta, but its ``ru_maxrss`` is the maximum over every child
ever reaped, so it cannot isolate one run.)

The child is not spawned by the benchmark process itself but by a small
launcher interpreter (``python -I -S``, about 8 MiB). On Linux a process's
``ru_maxrss`` keeps the peak of the image it replaced at ``exec``, which for a
child of a fork or vfork is its parent's memory: a child of this process
(numpy, matplotlib and a few hundred MiB of benchmark buffers) would report at
least that much, whatever it does. The launcher's own small footprint is below
that of any interpreter being measured, so it does not show, and the figures
agree with ``/usr/bin/time -f %M``.

Wall time is taken by the launcher around spawn and reap, so it includes the
interpreter's start-up and exit, as a user sees them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {wall!r} "
              f"{usage.ru_utime + usage.ru_stime!r} {usage.ru_maxrss}")
"""


class ChildFailed(RuntimeError):
    """The child interpreter exited with a non-zero status (the message holds its stderr)."""


@dataclass(frozen=True, slots=True)
class ChildRun:
    """One child interpreter's run."""

    wall: float
    """Seconds from spawn to reap."""
    cpu: float
    """User + system CPU seconds of the child."""
    max_rss: int
    """Peak resident set size of the child, in bytes."""
    stdout: str


def run_python(code: str, *args: str) -> ChildRun:
    """Run ``sys.executable -c code *args`` and measure it; raise :class:`ChildFailed` on error."""
    child = [sys.executable, "-c", code, *args]
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        report = Path(tmp) / "report"
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), *child]
        actions = [
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        pid = os.posix_spawn(sys.executable, launcher, os.environ, file_actions=actions)
        _, status, _ = os.wait4(pid, 0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
        launcher_exit = os.waitstatus_to_exitcode(status)
        if launcher_exit != 0 or not report.exists():
            raise ChildFailed(f"the launcher exited with {launcher_exit}:\n{stderr[-2000:]}")
        exit_text, wall, cpu, max_rss = report.read_text().split()
    if int(exit_text) != 0:
        raise ChildFailed(f"child {child[2:]!r} exited with {exit_text}:\n{stderr.strip()[-2000:]}")
    return ChildRun(
        wall=float(wall), cpu=float(cpu), max_rss=maxrss_bytes(int(max_rss)), stdout=stdout
    )


def maxrss_bytes(ru_maxrss: int) -> int:
    """``ru_maxrss`` in bytes: Linux reports KiB, macOS bytes."""
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024
