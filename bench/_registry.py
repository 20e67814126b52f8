"""The benchmark registry: the decorator each benchmark module uses, and where they are found.

A benchmark is a public module of this package (no leading underscore) that
defines a builder ``(Settings) -> Sequence[Case]`` and registers it with
:func:`benchmark`; :func:`all_benchmarks` imports every such module, so adding
a benchmark needs no edit elsewhere. Builders import heavy or optional packages
(the kernel, pykka, the native extension) themselves, so ``--list`` works
without them; a builder raises :class:`Skip` when something optional is missing.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ._core import Case, Goal

ORDER: tuple[str, ...] = ("membw", "startup", "tell", "ask", "restart", "spawn", "convert")
"""Run order of the kernel's benchmarks (cheap probes first); any other follows, by name."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """How hard to measure: ``quick`` is a smoke run (few samples, small sizes)."""

    quick: bool = False

    def pick(self, full: T, quick: T) -> T:
        """``quick`` in a smoke run, ``full`` otherwise."""
        return quick if self.quick else full

    @property
    def samples(self) -> int:
        return self.pick(15, 3)

    @property
    def warmup(self) -> int:
        return self.pick(2, 1)


Builder = Callable[[Settings], Sequence[Case]]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A registered benchmark: its name, what it measures, its goals, and its builder."""

    name: str
    description: str
    build: Builder
    goals: tuple[Goal, ...] = ()


class Skip(Exception):
    """Raised by a builder when the benchmark cannot run here (the message says why)."""


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str, description: str, goals: tuple[Goal, ...] = ()
) -> Callable[[Builder], Builder]:
    """Register the decorated builder as benchmark ``name``."""

    def register(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        _REGISTRY[name] = Benchmark(name, description, build, goals)
        return build

    return register


def all_benchmarks() -> dict[str, Benchmark]:
    """Every benchmark by name: those of :data:`ORDER` first, then the others by name.

    A module that fails to import does not hide the others: it is listed as a
    benchmark whose build raises the import error, so a run reports it as failed.
    """
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{__package__}.{module.name}")
        except Exception:
            failure = traceback.format_exc()
            _REGISTRY.setdefault(
                module.name,
                Benchmark(module.name, "(the module fails to import)", _raiser(failure)),
            )
    rank = {name: index for index, name in enumerate(ORDER)}
    names = sorted(_REGISTRY, key=lambda name: (rank.get(name, len(ORDER)), name))
    return {name: _REGISTRY[name] for name in names}


def _raiser(failure: str) -> Builder:
    def build(settings: Settings) -> Sequence[Case]:
        raise ImportError(failure)

    return build
