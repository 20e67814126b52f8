"""``python -m actors.ml.models build --out DIR``: build model folders and their component ZIPs."""

from __future__ import annotations

import argparse
import sys
import time

from ._build import MODELS, build_model, pack
from ._errors import ModelSourceMissing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.ml.models")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build model folders and pack them as ZIP artifacts")
    build.add_argument("--out", required=True, help="directory for the folders and ZIPs")
    build.add_argument("--model", action="append", choices=sorted(MODELS),
                       help="a model to build (repeatable; default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.add_argument("--no-zip", action="store_true", help="build folders only")
    args = parser.parse_args(argv)
    for name in args.model or sorted(MODELS):
        start = time.perf_counter()
        try:
            folder = build_model(name, args.out, force=args.force)
        except ModelSourceMissing as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        made = [str(folder)] if args.no_zip else [str(folder), str(pack(folder))]
        print(f"{name}: {' + '.join(made)} ({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
