"""The ``edge-actors`` command line: a thin layer over Nucleus and the bench harness."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMPONENT = "com.example.HelloWorld=1.0.0"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-actors",
        description="An asyncio actor runtime that deploys and supervises Greengrass v2 "
        "components on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"edge-actors {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="deploy components locally and run them",
        description="Deploy components from a recipe folder (as `greengrass-cli deployment "
        "create --recipeDir --artifactDir --merge` does), start them in dependency order, "
        "print their states and output. Without --serve, exits once every component is "
        "FINISHED (or fails with the reason); with --serve, runs until SIGTERM/SIGINT.",
    )
    run.add_argument("components", nargs="*", default=[DEFAULT_COMPONENT],
                     metavar="NAME=VERSION",
                     help=f"components to deploy (default: {DEFAULT_COMPONENT})")
    run.add_argument("--recipe-dir", type=Path, default=REPO / "recipes",
                     help="folder of recipe files (default: the project's recipes/)")
    run.add_argument("--artifact-dir", type=Path, default=None,
                     help="folder of artifacts as <name>/<version>/... "
                     "(default: <recipe-dir>/artifacts)")
    run.add_argument("--root", type=Path, default=Path(".edge-actors"),
                     help="the runtime's root folder for work folders and state "
                     "(default: ./.edge-actors)")
    run.add_argument("--serve", action="store_true",
                     help="keep running until SIGTERM/SIGINT instead of exiting when done")
    run.add_argument("--timeout", type=float, default=300.0,
                     help="seconds to wait for the components to finish (default: 300)")

    bench = sub.add_parser("bench", help="run the benchmark harness (python -m bench)",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _components(items: list[str]) -> dict[str, str]:
    wanted = {}
    for item in items:
        name, _, version = item.partition("=")
        wanted[name] = version or "*"
    return wanted


async def _run(args: argparse.Namespace) -> int:
    from .component import State
    from .nucleus import Nucleus

    wanted = _components(args.components)
    artifacts = args.artifact_dir or args.recipe_dir / "artifacts"
    async with Nucleus(args.root, handle_signals=True) as nucleus:
        nucleus.on_state(lambda name, state, reason: print(
            f"[state] {name}: {state}" + (f" ({reason})" if reason else ""), flush=True))
        nucleus.on_output(lambda name, line: print(f"[{name}] {line}", flush=True))
        await nucleus.deploy(args.recipe_dir, artifacts, wanted)
        if args.serve:
            await nucleus.system.serve()
            return 0
        try:
            await nucleus.wait_states(nucleus.status, {State.FINISHED, State.BROKEN},
                                      timeout=args.timeout)
        except TimeoutError:
            print(f"edge-actors: components still running after {args.timeout:g} s: "
                  + ", ".join(f"{n} {s.state}" for n, s in nucleus.status.items()
                              if s.state is not State.FINISHED), file=sys.stderr)
            return 1
    summary = ", ".join(f"{s.name} {s.version} {s.state}" for s in nucleus.status.values())
    if any(s.state is not State.FINISHED for s in nucleus.status.values()):
        print(f"deployment FAILED: {summary}", file=sys.stderr)
        return 1
    print(f"deployment SUCCEEDED: {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bench":
        from bench.__main__ import main as bench_main

        return bench_main(args.args)
    from .kernel import run
    from .recipe import RecipeError

    try:
        return run(_run, args)
    except RecipeError as exc:
        print(f"edge-actors: {exc}", file=sys.stderr)
        return 2
