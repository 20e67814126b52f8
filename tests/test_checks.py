"""The static checks run with the tests: ruff over everything, mypy --strict over actors/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "actors", "tests", "bench",
                           "setup.py"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# The rooms, lowest first: each imports only rooms before it (docs/ARCHITECTURE.md).
ROOMS = ["kernel", "errors", "layout", "recipe", "config", "artifacts", "component", "ipc",
         "host", "deploy", "ml", "events", "nucleus", "fleet", "init_config", "cli",
         "__main__"]


def _imports() -> dict[str, set[str]]:
    """Module -> the modules of actors it imports (at any depth of the file, type-only
    imports included: a circle there is a circle in the design)."""
    import ast

    graph: dict[str, set[str]] = {}
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in (REPO / "actors").rglob("*.py")}
    for path in (REPO / "actors").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        package = module.removesuffix(".__init__") if path.name == "__init__.py" \
            else module.rsplit(".", 1)[0]
        module = module.removesuffix(".__init__")
        found = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" for a in node.names]
                targets = [t if t in modules else base for t in targets]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found |= {t for t in targets if t.startswith("actors.") and t != module}
    return graph


def test_rooms_import_only_the_rooms_below_them() -> None:
    wrong = []
    for module, targets in _imports().items():
        room = module.split(".")[1] if module.count(".") else "actors"
        for target in targets:
            other = target.split(".")[1]
            if other == room or room == "actors" or other not in ROOMS:
                continue
            if room not in ROOMS or ROOMS.index(other) > ROOMS.index(room):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circles_outside_the_kernel() -> None:
    graph = {m: {t for t in ts if not t.startswith("actors.kernel")}
             for m, ts in _imports().items() if not m.startswith("actors.kernel")}
    circles = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                # A package importing its own modules is how packages work, not a circle.
                circle = path[path.index(target):]
                if not all(m.startswith(target + ".") or m == target for m in circle):
                    circles.append(" -> ".join([*circle, target]))
            elif target in graph and target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not circles, "\n".join(circles)
