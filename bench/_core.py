"""The generic core: what a benchmark declares, how its contenders are sampled, and the stats.

A benchmark is made of :class:`Case` objects. A case names its metrics, its
contenders (ours, real peer packages, baselines, physical bounds) and which
pairs to compare. :func:`run_case` samples every contender in the same
process, interleaved round by round after warm-up rounds, so that slow drift
(thermal throttling, a noisy neighbour, the page cache) spreads over all
contenders instead of biasing whichever ran last.

Ratios are always expressed as "how many times better ours is": peer ÷ ours
for a metric where lower is better (time, bytes), ours ÷ peer where higher is
better (throughput, bandwidth). So > 1 always means ours wins.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Better = Literal["lower", "higher"]
Role = Literal["ours", "peer", "baseline", "bound", "probe"]
"""Who a contender is: ``ours`` (edge-actors), ``peer`` (a real other package or
the idiom it replaces), ``baseline`` (a floor such as an empty interpreter),
``bound`` (a physical limit) or ``probe`` (a measurement of the machine)."""

MIN_ROUNDS = 3
"""Rounds a time budget cannot cut: the fewest that still give a min, a median and a max."""

PEER_ROLES: frozenset[str] = frozenset({"peer", "bound"})
"""Roles whose ratios are charted: the competition and the physical limits."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured quantity, stored in SI base units (``s``, ``B``, ``msg/s``, ``B/s``)."""

    name: str
    unit: str
    better: Better
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True, slots=True)
class Goal:
    """A threshold a figure should reach: ``value >= threshold`` or ``value <= threshold``.

    For a ratio goal the value is the "ours better" ratio (e.g. 0.5 = "within
    2x of the peer"); for a limit goal it is ours' median in the metric's unit.
    """

    text: str
    threshold: float
    at_least: bool = True

    def met(self, value: float) -> bool:
        return value >= self.threshold if self.at_least else value <= self.threshold


@dataclass(frozen=True, slots=True)
class Contender:
    """One thing being measured. ``run`` takes one sample: it returns a value per metric.

    ``run`` does its own timing so that its set-up (a fresh event loop, a
    spawned actor) stays outside the measured span.
    """

    name: str
    role: Role
    run: Callable[[], Mapping[str, float]]
    label: str = ""


@dataclass(frozen=True, slots=True)
class Comparison:
    """Compare contender ``ours`` against ``peer`` on ``metrics`` (all of the case's if empty)."""

    ours: str
    peer: str
    metrics: tuple[str, ...] = ()
    goal: Goal | None = None


@dataclass(frozen=True, slots=True)
class Limit:
    """An absolute goal on one contender's median, e.g. restart latency <= 1 ms."""

    contender: str
    metric: str
    goal: Goal


@dataclass(frozen=True)
class Case:
    """A set of contenders sampled together, interleaved; what a benchmark is made of."""

    name: str
    metrics: tuple[Metric, ...]
    contenders: tuple[Contender, ...]
    comparisons: tuple[Comparison, ...] = ()
    limits: tuple[Limit, ...] = ()
    samples: int = 10
    warmup: int = 1
    budget: float | None = None
    """Seconds after which no further round starts, once :data:`MIN_ROUNDS` are taken."""
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.contenders]
        if len(set(names)) != len(names):
            raise ValueError(f"case {self.name!r}: contender names repeat: {names}")
        metric_names = {m.name for m in self.metrics}
        for comparison in self.comparisons:
            for who in (comparison.ours, comparison.peer):
                if who not in names:
                    raise ValueError(f"case {self.name!r}: comparison names unknown {who!r}")
            unknown = set(comparison.metrics) - metric_names
            if unknown:
                raise ValueError(f"case {self.name!r}: comparison names unknown metrics {unknown}")
        for limit in self.limits:
            if limit.contender not in names or limit.metric not in metric_names:
                raise ValueError(f"case {self.name!r}: limit {limit} names an unknown contender")
        if self.samples < 1 or self.warmup < 0:
            raise ValueError(f"case {self.name!r}: needs samples >= 1 and warmup >= 0")

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of one contender's samples for one metric."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no samples")
        return cls(min(values), statistics.median(values), max(values), len(values))


def ours_better_ratio(ours: float, peer: float, better: Better) -> float | None:
    """How many times better ``ours`` is than ``peer`` (> 1: ours wins), whatever the metric.

    None when either figure is not positive (e.g. a memory delta lost in the
    noise): no ratio of such figures means anything.
    """
    if ours <= 0 or peer <= 0:
        return None
    return peer / ours if better == "lower" else ours / peer


@dataclass(frozen=True, slots=True)
class ContenderResult:
    name: str
    role: Role
    label: str
    samples: Mapping[str, list[float]]

    def stats(self, metric: str) -> Stats:
        return Stats.of(self.samples[metric])


@dataclass(frozen=True, slots=True)
class RatioResult:
    ours: str
    peer: str
    peer_role: Role
    metric: str
    ratio: float | None
    goal: Goal | None

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        return self.goal.met(self.ratio)


@dataclass(frozen=True, slots=True)
class LimitResult:
    contender: str
    metric: str
    median: float
    goal: Goal

    @property
    def met(self) -> bool:
        return self.goal.met(self.median)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """A case's figures. It keeps the case's description, not its contenders (nor their buffers)."""

    name: str
    metrics: tuple[Metric, ...]
    params: Mapping[str, Any]
    notes: tuple[str, ...]
    samples: int
    warmup: int
    budget: float | None
    contenders: tuple[ContenderResult, ...]
    ratios: tuple[RatioResult, ...]
    limits: tuple[LimitResult, ...]


Tick = Callable[[str], None]
"""Progress callback: called once per sample taken, with the contender's name."""


def round_order(contenders: Sequence[Contender], round_index: int) -> Sequence[Contender]:
    """A B C on even rounds, C B A on odd ones: every contender gets the same mean position."""
    return contenders if round_index % 2 == 0 else contenders[::-1]


def run_case(case: Case, tick: Tick = lambda _name: None) -> CaseResult:
    """Warm up, then sample every contender ``case.samples`` times, interleaved.

    With a ``case.budget``, rounds stop once the budget is spent (but never
    before :data:`MIN_ROUNDS`, nor after ``case.samples``); the stats' ``n`` says
    how many were taken.
    """
    for round_index in range(case.warmup):
        for contender in round_order(case.contenders, round_index):
            _take_sample(case, contender)
            tick(contender.name)
    samples: dict[str, dict[str, list[float]]] = {
        c.name: {m.name: [] for m in case.metrics} for c in case.contenders
    }
    start = time.perf_counter()
    for round_index in range(case.samples):
        spent = time.perf_counter() - start
        if case.budget is not None and round_index >= MIN_ROUNDS and spent > case.budget:
            break
        for contender in round_order(case.contenders, round_index):
            for metric, value in _take_sample(case, contender).items():
                samples[contender.name][metric].append(value)
            tick(contender.name)
    results = tuple(
        ContenderResult(c.name, c.role, c.label, samples[c.name]) for c in case.contenders
    )
    return CaseResult(
        name=case.name,
        metrics=case.metrics,
        params=dict(case.params),
        notes=case.notes,
        samples=case.samples,
        warmup=case.warmup,
        budget=case.budget,
        contenders=results,
        ratios=_ratios(case, results),
        limits=_limits(case, results),
    )


def _take_sample(case: Case, contender: Contender) -> dict[str, float]:
    # Collect the previous contender's garbage now rather than during this one's timing.
    gc.collect()
    values = dict(contender.run())
    expected = {m.name for m in case.metrics}
    if set(values) != expected:
        raise ValueError(
            f"case {case.name!r}: contender {contender.name!r} returned metrics "
            f"{sorted(values)}, expected {sorted(expected)}"
        )
    for metric, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{contender.name!r} measured {metric}={value!r}")
    return {k: float(v) for k, v in values.items()}


def _ratios(case: Case, results: Iterable[ContenderResult]) -> tuple[RatioResult, ...]:
    by_name = {r.name: r for r in results}
    out: list[RatioResult] = []
    for comparison in case.comparisons:
        ours, peer = by_name[comparison.ours], by_name[comparison.peer]
        for metric_name in comparison.metrics or tuple(m.name for m in case.metrics):
            metric = case.metric(metric_name)
            ratio = ours_better_ratio(
                ours.stats(metric_name).median, peer.stats(metric_name).median, metric.better
            )
            out.append(
                RatioResult(ours.name, peer.name, peer.role, metric_name, ratio, comparison.goal)
            )
    return tuple(out)


def _limits(case: Case, results: Iterable[ContenderResult]) -> tuple[LimitResult, ...]:
    by_name = {r.name: r for r in results}
    return tuple(
        LimitResult(
            limit.contender,
            limit.metric,
            by_name[limit.contender].stats(limit.metric).median,
            limit.goal,
        )
        for limit in case.limits
    )


def compare_each(
    pairs: Iterable[tuple[str, str]], metrics: tuple[str, ...] = (), goal: Goal | None = None
) -> tuple[Comparison, ...]:
    """Shorthand: one :class:`Comparison` per ``(ours, peer)`` pair, sharing metrics and goal."""
    return tuple(Comparison(ours, peer, metrics, goal) for ours, peer in pairs)
