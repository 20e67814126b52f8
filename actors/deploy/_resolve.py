"""Version resolution across every deployment group, as the Greengrass nucleus does it.

Each group (a thing group, or LOCAL_DEPLOYMENT for local deployments) asks for
root components at versions; each chosen recipe asks for its dependencies with
npm-style ranges. The resolver picks, for each component, the highest version
that satisfies every requirement on it, backtracking when a later choice
conflicts, and reports a failure naming every requirer and what it asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded on first use: start-up with nothing to resolve skips it
    from semantic_version import NpmSpec

from ..recipe import Recipe, RecipeError, npm_range


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


#: Bounds on one resolution: how many components it may choose, and how many
#: candidate versions it may try before it gives up (backtracking is exponential
#: in the worst case).
MAX_COMPONENTS = 10_000
MAX_TRIES = 200_000


def _describe(name: str, reqs: Sequence[Requirement], available: Sequence[Recipe]) -> str:
    from semantic_version import Version

    asked = ", ".join(f"{r.requirer} requires {r.text}" for r in reqs)
    have = ", ".join(f"{r.version}" + ("" if r.matched else f" (no manifest for {r.platform})")
                     for r in sorted(available, key=lambda r: Version(r.version))) or "none"
    return f"no version of {name} satisfies every requirement: {asked} (available: {have})"


def resolve(groups: Mapping[str, Mapping[str, str]],
            available: Mapping[str, Sequence[Recipe]]) -> dict[str, Recipe]:
    """Pick one recipe per component; raises :class:`ResolutionError`."""
    requirements: dict[str, list[Requirement]] = {}
    order: list[str] = []
    for group, roots in sorted(groups.items()):
        for name, version in roots.items():
            try:
                text = npm_range(_exact(str(version).strip() or "*"))
            except ValueError:
                raise ResolutionError(
                    f"group {group}: {name}: {version!r} is not a version or semver range"
                ) from None
            requirements.setdefault(name, []).append(Requirement(f"group {group}", text))
            if name not in order:
                order.append(name)
    failures: list[str] = []
    chosen = _solve(order, requirements, available, failures)
    if chosen is None:
        raise ResolutionError(failures[0] if failures else "no solution")
    _check_cycles(chosen)
    return chosen


@dataclass
class _Frame:
    """One decision of the search: the components still to choose (from ``at`` on),
    what is chosen, the requirements so far, and the candidates left for the next one."""

    pending: list[str]
    at: int
    chosen: dict[str, Recipe]
    requirements: dict[str, list[Requirement]]
    name: str = ""
    options: Iterator[Recipe] | None = None


def _solve(order: list[str], requirements: dict[str, list[Requirement]],
           available: Mapping[str, Sequence[Recipe]], failures: list[str]
           ) -> dict[str, Recipe] | None:
    """Depth-first search with backtracking, on a stack of its own (a chain of
    thousands of components must not exhaust Python's)."""
    stack = [_Frame(order, 0, {}, requirements)]
    tries = 0
    while stack:
        frame = stack[-1]
        if frame.options is None:
            while frame.at < len(frame.pending) and frame.pending[frame.at] in frame.chosen:
                frame.at += 1
            if frame.at == len(frame.pending):
                return frame.chosen
            name = frame.name = frame.pending[frame.at]
            reqs = frame.requirements.get(name, [])
            candidates = [r for r in available.get(name, ())
                          if r.matched and all(q.spec.match(r.semver) for q in reqs)]
            if not candidates:
                failures.append(_describe(name, reqs, available.get(name, ())))
                stack.pop()
                continue
            frame.options = iter(sorted(candidates, key=lambda r: r.semver, reverse=True))
        recipe = next(frame.options, None)
        if recipe is None:
            stack.pop()
            continue
        tries += 1
        if tries > MAX_TRIES:
            raise ResolutionError(
                f"gave up after trying {MAX_TRIES:,} component versions: the version "
                f"requirements leave too many combinations ({failures[0] if failures else ''})")
        name = frame.name
        requirer = f"{name} {recipe.version}"
        added = {dep.name: Requirement(requirer, dep.requirement)
                 for dep in recipe.dependencies.values()}
        # A dependency already chosen must satisfy the new range too.
        clash = next((d for d, q in added.items()
                      if d in frame.chosen and not q.spec.match(frame.chosen[d].semver)), None)
        if clash is not None:
            failures.append(_describe(clash, [*frame.requirements.get(clash, []), added[clash]],
                                      available.get(clash, ())))
            continue
        if len(frame.chosen) >= MAX_COMPONENTS:
            raise ResolutionError(f"the deployment needs more than {MAX_COMPONENTS:,} "
                                  "components; split it into smaller ones")
        extended = dict(frame.requirements)  # lists are never changed in place: shared
        for dep, req in added.items():
            extended[dep] = [*extended.get(dep, ()), req]
        rest = frame.pending[frame.at + 1:]
        waiting = set(rest)
        new_pending = rest + [d for d in added if d not in frame.chosen and d not in waiting]
        stack.append(_Frame(new_pending, 0, {**frame.chosen, name: recipe}, extended))
    return None


def _check_cycles(chosen: Mapping[str, Recipe]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for root in sorted(chosen):
        if state.get(root):
            continue
        state[root] = 1
        path = [root]
        stack = [iter(sorted(chosen[root].dependencies))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if dep not in chosen or state.get(dep) == 2:
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise ResolutionError(f"dependency cycle: {' -> '.join(cycle)}")
            state[dep] = 1
            path.append(dep)
            stack.append(iter(sorted(chosen[dep].dependencies)))


def start_order(chosen: Mapping[str, Recipe]) -> list[str]:
    """Dependencies before dependents; ties in name order (deterministic)."""
    done: list[str] = []
    seen: set[str] = set()
    for root in sorted(chosen):
        if root in seen:
            continue
        seen.add(root)
        path = [root]
        stack = [iter(sorted(chosen[root].dependencies))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                done.append(path.pop())
                stack.pop()
            elif dep in chosen and dep not in seen:
                seen.add(dep)
                path.append(dep)
                stack.append(iter(sorted(chosen[dep].dependencies)))
    return done
