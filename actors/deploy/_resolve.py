"""Version resolution across every deployment group, as the Greengrass nucleus does it.

Each group (a thing group, or LOCAL_DEPLOYMENT for local deployments) asks for
root components at versions; each chosen recipe asks for its dependencies with
npm-style ranges. The resolver picks, for each component, the highest version
that satisfies every requirement on it, backtracking when a later choice
conflicts, and reports a failure naming every requirer and what it asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on first use: start-up with nothing to resolve skips it
    from semantic_version import NpmSpec

from ..recipe import Recipe, RecipeError


class ResolutionError(RecipeError):
    """No set of versions satisfies every requirement (names the requirers), or a cycle."""


@dataclass(frozen=True)
class Requirement:
    requirer: str  # "group LOCAL_DEPLOYMENT" or "com.example.App 1.0.0"
    text: str

    @property
    def spec(self) -> NpmSpec:
        from semantic_version import NpmSpec

        return NpmSpec(self.text)


def _exact(requirement: str) -> str:
    """A bare version in a deployment means that exact version."""
    from semantic_version import Version

    try:
        Version(requirement)
    except ValueError:
        return requirement
    return f"={requirement}"


def _describe(name: str, reqs: Sequence[Requirement], available: Sequence[Recipe]) -> str:
    from semantic_version import Version

    asked = ", ".join(f"{r.requirer} requires {r.text}" for r in reqs)
    have = ", ".join(sorted((r.version for r in available), key=Version)) or "none"
    return f"no version of {name} satisfies every requirement: {asked} (available: {have})"


def resolve(groups: Mapping[str, Mapping[str, str]],
            available: Mapping[str, Sequence[Recipe]]) -> dict[str, Recipe]:
    """Pick one recipe per component; raises :class:`ResolutionError`."""
    from semantic_version import NpmSpec

    requirements: dict[str, list[Requirement]] = {}
    order: list[str] = []
    for group, roots in sorted(groups.items()):
        for name, version in roots.items():
            text = _exact(str(version).strip() or "*")
            try:
                NpmSpec(text)
            except ValueError:
                raise ResolutionError(
                    f"group {group}: {name}: {version!r} is not a version or semver range"
                ) from None
            requirements.setdefault(name, []).append(Requirement(f"group {group}", text))
            if name not in order:
                order.append(name)
    failures: list[str] = []
    chosen = _solve(order, {}, requirements, available, failures)
    if chosen is None:
        raise ResolutionError(failures[0] if failures else "no solution")
    _check_cycles(chosen)
    return chosen


def _solve(pending: list[str], chosen: dict[str, Recipe],
           requirements: dict[str, list[Requirement]],
           available: Mapping[str, Sequence[Recipe]], failures: list[str]
           ) -> dict[str, Recipe] | None:
    if not pending:
        return chosen
    name, rest = pending[0], pending[1:]
    reqs = requirements.get(name, [])
    if name in chosen:
        return _solve(rest, chosen, requirements, available, failures)
    candidates = [r for r in available.get(name, ())
                  if all(q.spec.match(r.semver) for q in reqs)]
    if not candidates:
        failures.append(_describe(name, reqs, available.get(name, ())))
        return None
    for recipe in sorted(candidates, key=lambda r: r.semver, reverse=True):
        requirer = f"{name} {recipe.version}"
        added = {dep.name: Requirement(requirer, dep.requirement)
                 for dep in recipe.dependencies.values()}
        # A dependency already chosen must satisfy the new range too.
        clash = next((d for d, q in added.items()
                      if d in chosen and not q.spec.match(chosen[d].semver)), None)
        if clash is not None:
            failures.append(_describe(clash, [*requirements.get(clash, []), added[clash]],
                                      available.get(clash, ())))
            continue
        extended = {k: list(v) for k, v in requirements.items()}
        for dep, req in added.items():
            extended.setdefault(dep, []).append(req)
        new_pending = rest + [d for d in added if d not in chosen and d not in rest]
        result = _solve(new_pending, {**chosen, name: recipe}, extended, available, failures)
        if result is not None:
            return result
    return None


def _check_cycles(chosen: Mapping[str, Recipe]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*stack[stack.index(name):], name]
            raise ResolutionError(f"dependency cycle: {' -> '.join(cycle)}")
        state[name] = 1
        stack.append(name)
        for dep in chosen[name].dependencies:
            if dep in chosen:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(chosen):
        visit(name)


def start_order(chosen: Mapping[str, Recipe]) -> list[str]:
    """Dependencies before dependents; ties in name order (deterministic)."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in sorted(chosen[name].dependencies):
            if dep in chosen:
                visit(dep)
        done.append(name)

    for name in sorted(chosen):
        visit(name)
    return done
