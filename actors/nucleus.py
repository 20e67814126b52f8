"""Nucleus: wires the rooms into one supervision tree; the embedding API.

Today it deploys components from a recipe folder locally (the way
``greengrass-cli deployment create --recipeDir --artifactDir --merge`` does),
each a :class:`ComponentActor` under one rest_for_one supervisor in dependency
order, so a crashed component restarts together with the components that
depend on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .component import ComponentActor, ComponentPaths, State
from .kernel import ActorSystem, ChildSpec, Restart, Strategy, Supervisor
from .recipe import Recipe, RecipeError, load_recipe

log = logging.getLogger("actors.nucleus")

COMPONENTS = "components"


@dataclass
class ComponentStatus:
    name: str
    version: str
    state: State = State.NEW
    reason: str = ""
    history: list[State] = field(default_factory=list)


class DeploymentError(RecipeError):
    """A deployment cannot be made: names the component and what is missing."""


def load_recipes(recipe_dir: Path) -> dict[str, list[Recipe]]:
    """Every recipe in a folder (``*.yaml``, ``*.yml``, ``*.json``), by component name."""
    if not recipe_dir.is_dir():
        raise DeploymentError(f"{recipe_dir}: recipe folder not found (give --recipe-dir)")
    found: dict[str, list[Recipe]] = {}
    for path in sorted(recipe_dir.iterdir()):
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            recipe = load_recipe(path)
            found.setdefault(recipe.name, []).append(recipe)
    return found


def plan(recipes: Mapping[str, list[Recipe]], wanted: Mapping[str, str]) -> list[Recipe]:
    """The recipes to run for ``wanted`` (name -> exact version) and their hard
    dependencies, dependencies first. Version ranges arrive with the resolver."""
    chosen: dict[str, Recipe] = {}
    order: list[Recipe] = []

    def pick(name: str, version: str | None, needed_by: str) -> None:
        if name in chosen:
            return
        candidates = recipes.get(name, [])
        if version not in (None, "*", ""):
            candidates = [r for r in candidates if r.version == version]
        if not candidates:
            have = ", ".join(r.version for r in recipes.get(name, [])) or "none"
            raise DeploymentError(
                f"{needed_by} needs component {name} {version or ''}".rstrip()
                + f", but the recipe folder has no such recipe (versions there: {have})")
        recipe = max(candidates, key=lambda r: tuple(int(p) for p in r.version.split("-")[0]
                                                     .split(".")))
        chosen[name] = recipe
        for dep in recipe.dependencies:
            pick(dep, None, f"{name} {recipe.version}")
        order.append(recipe)

    for name, version in wanted.items():
        pick(name, version, "the deployment")
    return order


class Nucleus:
    """The runtime as an asyncio service::

        async with Nucleus(root) as nucleus:
            await nucleus.deploy(recipe_dir, artifact_dir, {"com.example.HelloWorld": "1.0.0"})
    """

    def __init__(self, root: Path, *, thing_name: str = "edge-actors-local",
                 handle_signals: bool = False) -> None:
        self.root = Path(root)
        self.thing_name = thing_name
        self.system = ActorSystem("nucleus", handle_signals=handle_signals)
        self.status: dict[str, ComponentStatus] = {}
        self._changed = anyio.Event()
        self._listeners: list[Callable[[str, State, str], None]] = []
        self._output_listeners: list[Callable[[str, str], None]] = []

    async def __aenter__(self) -> Nucleus:
        self.root.mkdir(parents=True, exist_ok=True)
        await self.system.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        return await self.system.__aexit__(exc_type, exc, tb)

    def on_state(self, listener: Callable[[str, State, str], None]) -> None:
        """Call ``listener(component, state, reason)`` on every state change."""
        self._listeners.append(listener)

    def on_output(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(component, line)`` for every line a lifecycle step prints."""
        self._output_listeners.append(listener)

    def _state(self, name: str, state: State, reason: str) -> None:
        status = self.status[name]
        status.state, status.reason = state, reason
        status.history.append(state)
        for listener in self._listeners:
            listener(name, state, reason)
        self._changed.set()
        self._changed = anyio.Event()

    def _output(self, name: str, line: str) -> None:
        for listener in self._output_listeners:
            listener(name, line)

    async def deploy(self, recipe_dir: Path, artifact_dir: Path, components: Mapping[str, str],
                     configuration: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Deploy ``components`` (name -> version) with their dependencies; returns
        when every component has started (RUNNING or FINISHED)."""
        found = await anyio.to_thread.run_sync(load_recipes, Path(recipe_dir))
        recipes = plan(found, components)
        artifact_root = await anyio.Path(artifact_dir).absolute()
        specs = []
        for recipe in recipes:
            config = {**recipe.default_configuration, **(configuration or {}).get(recipe.name, {})}
            paths = ComponentPaths(
                root=self.root,
                artifacts=Path(artifact_root) / recipe.name / recipe.version,
                work=self.root / "work" / recipe.name,
            )
            self.status[recipe.name] = ComponentStatus(recipe.name, recipe.version)
            specs.append(ChildSpec(
                recipe.name,
                functools.partial(ComponentActor, recipe, config, paths,
                                  thing_name=self.thing_name, on_state=self._state,
                                  on_output=self._output),
                restart=Restart.TRANSIENT,  # a run step that exits 0 is FINISHED, not restarted
                shutdown=30.0,
                depends_on=tuple(recipe.dependencies),
            ))
        await self.system.spawn(
            lambda: Supervisor(specs, strategy=Strategy.REST_FOR_ONE, max_restarts=3,
                               period=3600.0),
            name=COMPONENTS, kind="supervisor", shutdown=None)

    async def wait_states(self, names: Iterable[str], states: Iterable[State],
                          timeout: float | None = None) -> None:
        """Wait until every named component is in one of ``states``."""
        names, wanted = list(names), set(states)
        with anyio.fail_after(timeout):
            while any(self.status[n].state not in wanted for n in names):
                await self._changed.wait()
