"""Command line of the benchmark harness: ``python -m bench`` (also ``edge-actors bench``)."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ._charts import write_charts
from ._machine import machine_info
from ._progress import make_progress
from ._readme import MarkersMissing, update_readme
from ._registry import Benchmark, Settings, all_benchmarks
from ._report import (
    Document,
    build_document,
    limit_table,
    markdown,
    not_run,
    ratio_table,
    read_json,
    write_json,
)
from ._run import run_all

LATEST = "latest"


def default_results_root() -> Path:
    """``bench/results`` in a source checkout; ``./bench-results`` when bench is installed."""
    here = Path(__file__).resolve().parent
    if (here.parent / "pyproject.toml").is_file():
        return here / "results"
    return Path.cwd() / "bench-results"


def _listing(benchmarks: dict[str, Benchmark]) -> list[str]:
    """One line per benchmark: its name, padded, then its description."""
    width = max(map(len, benchmarks), default=0)
    return [f"{name:<{width}}  {b.description}" for name, b in benchmarks.items()]


def parser(benchmarks: dict[str, Benchmark]) -> argparse.ArgumentParser:
    listing = "\n".join(f"  {line}" for line in _listing(benchmarks))
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Measure edge-actors against its peers (pykka, bare asyncio idioms, numpy, the "
            "machine's memory bandwidth), interleaving contenders in one process after warm-up. "
            "Each run writes results.json (machine info and every sample), results.md and PNG "
            "charts to OUT/<UTC timestamp>/ and copies them to OUT/latest/."
        ),
        epilog=(
            f"benchmarks:\n{listing}\n\n"
            "Ratios read 'how many times better ours is': > 1 means ours wins."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="name each benchmark and exit")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: few samples, small sizes; figures are not representative",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results JSON here")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        default=None,
        help=f"results root (default: {default_results_root()})",
    )
    p.add_argument(
        "--readme",
        type=Path,
        metavar="FILE",
        help=(
            "do not measure: rewrite the section of FILE between '<!-- bench:start -->' and "
            "'<!-- bench:end -->' from OUT/latest/results.json"
        ),
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (``sys.argv[1:]`` when None); returns the exit status."""
    benchmarks = all_benchmarks()
    p = parser(benchmarks)
    args = p.parse_args(argv)
    root: Path = args.out if args.out is not None else default_results_root()

    if args.list:
        print("\n".join(_listing(benchmarks)))
        return 0
    if args.readme is not None:
        if args.names or args.quick or args.json:
            p.error("--readme only re-renders the latest results; run the benchmarks separately")
        return _readme(args.readme, root / LATEST)
    unknown = [n for n in args.names if n not in benchmarks]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benchmarks)}")

    selected = [benchmarks[n] for n in (args.names or benchmarks)]
    created = dt.datetime.now(dt.UTC)
    progress = make_progress(sys.stderr)
    try:
        outcomes = run_all(selected, Settings(quick=args.quick), progress)
    finally:
        progress.close()
    document = build_document(
        outcomes,
        machine_info(),
        quick=args.quick,
        argv=list(sys.argv[1:] if argv is None else argv),
        created=created,
    )
    run_dir = _write_run(document, root, created)
    if args.json is not None:
        write_json(document, args.json)
    _print_summary(document, run_dir, root / LATEST)
    return 1 if any(o.status == "error" for o in outcomes) else 0


def _write_run(document: Document, root: Path, created: dt.datetime) -> Path:
    """Write results.json, results.md and the charts to a fresh run folder; mirror to latest/."""
    stamp = created.strftime("%Y%m%dT%H%M%SZ")
    run_dir = root / stamp
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    write_json(document, run_dir / "results.json")
    (run_dir / "results.md").write_text(markdown(document))
    write_charts(document, run_dir)
    latest = root / LATEST
    if latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(run_dir, latest)
    return run_dir


def _print_summary(document: Document, run_dir: Path, latest: Path) -> None:
    print(ratio_table(document))
    limits = limit_table(document)
    if limits:
        print()
        print(limits)
    missing = not_run(document)
    if missing:
        print()
        print(missing)
    print(f"\nresults: {run_dir} (copied to {latest})", file=sys.stderr)


def _readme(readme: Path, latest: Path) -> int:
    results = latest / "results.json"
    try:
        document = read_json(results)
    except FileNotFoundError:
        print(f"error: {results} not found: run 'python -m bench' first", file=sys.stderr)
        return 1
    try:
        update_readme(readme, document, latest)
    except FileNotFoundError:
        print(f"error: {readme} not found", file=sys.stderr)
        return 1
    except MarkersMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if document["quick"]:
        print(f"warning: {results} is from a quick smoke run", file=sys.stderr)
    print(f"updated the benchmark section of {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
