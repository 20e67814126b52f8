"""Run registered benchmarks one after the other; a failing or skipped one never stops the rest."""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ._core import CaseResult, Goal, run_case
from ._progress import Progress
from ._registry import Benchmark, Settings, Skip

Status = Literal["ok", "skipped", "error"]


@dataclass(frozen=True, slots=True)
class BenchOutcome:
    """What became of one benchmark: its case results, or why it has none."""

    name: str
    description: str
    goals: tuple[Goal, ...]
    status: Status
    seconds: float
    cases: tuple[CaseResult, ...] = ()
    reason: str | None = None


def run_benchmark(bench: Benchmark, settings: Settings, progress: Progress) -> BenchOutcome:
    """Build the benchmark's cases and run them; a :class:`Skip` or an error is recorded."""
    progress.start(bench.name)
    start = time.perf_counter()
    status, results, reason = _attempt(bench, settings, progress)
    # The cases, and the buffers their contenders hold, are garbage now: free them before the next.
    gc.collect()
    seconds = time.perf_counter() - start
    progress.finish(status, seconds, reason)
    return BenchOutcome(
        bench.name, bench.description, bench.goals, status, seconds, results, reason
    )


def _attempt(
    bench: Benchmark, settings: Settings, progress: Progress
) -> tuple[Status, tuple[CaseResult, ...], str | None]:
    try:
        cases = list(bench.build(settings))
        progress.plan(sum((c.warmup + c.samples) * len(c.contenders) for c in cases))
        results: list[CaseResult] = []
        for case in cases:
            progress.case(case.name)
            results.append(run_case(case, progress.tick))
    except Skip as skip:
        return "skipped", (), str(skip)
    except Exception:
        return "error", (), traceback.format_exc()
    return "ok", tuple(results), None


def run_all(
    benchmarks: Iterable[Benchmark], settings: Settings, progress: Progress
) -> list[BenchOutcome]:
    """Run each benchmark in turn."""
    return [run_benchmark(bench, settings, progress) for bench in benchmarks]
