"""The fleet verbs of the command line: ``component publish``, ``component list --registry``,
``fleet group|deploy|status|cancel|devices|acl``. ``actors.cli`` adds them to its parser."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..artifacts import S3Settings


def registry_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--registry", required=required, metavar="s3://BUCKET/PREFIX",
                        help="the component registry on S3")
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="an S3-compatible endpoint (default: AWS's, or AWS_ENDPOINT_URL); "
                        "credentials come from the usual AWS chain (environment, profile)")


def broker_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, metavar="mqtt[s]://HOST:PORT",
                        help="the MQTT broker that carries deployment notices and status")
    parser.add_argument("--ca", type=Path, help="CA certificate of the broker (TLS)")
    parser.add_argument("--cert", type=Path, help="this client's certificate (TLS)")
    parser.add_argument("--key", type=Path, help="this client's private key (TLS)")
    parser.add_argument("--client-id", help="MQTT client id (default: fleet-controller)")


def s3_settings(args: argparse.Namespace) -> S3Settings:
    endpoint = getattr(args, "s3_endpoint", None)
    return S3Settings(endpoint_url=endpoint, addressing_style="path" if endpoint else "auto")


def add_component_verbs(csub: Any) -> None:
    """``component publish`` beside the existing ``component`` verbs."""
    p = csub.add_parser(
        "publish", help="publish a component version to the registry on S3",
        description="Upload a component version's artifacts and recipe to the registry, as "
        "`gdk component publish` does: each artifact's Uri is rewritten to its place in the "
        "registry and its Digest and Algorithm (SHA-256) filled in. Versions are immutable: "
        "publishing one that exists is refused.")
    p.add_argument("--recipe", type=Path, required=True, help="the recipe file (YAML or JSON)")
    p.add_argument("--artifacts", type=Path, help="folder of artifacts: <name>/<version>/<file> "
                   "or <file> (the last segment of each artifact's Uri)")
    registry_flags(p)


def add_fleet(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="fleet deployments to thing groups over MQTT")
    fsub = fleet.add_subparsers(dest="verb", required=True)
    group = fsub.add_parser("group", help="thing group membership (kept in the registry)")
    gsub = group.add_subparsers(dest="group_verb", required=True)
    for verb, text in (("add", "add things to a thing group (made when missing)"),
                       ("remove", "remove things from a thing group")):
        p = gsub.add_parser(verb, help=text)
        p.add_argument("name", help="the thing group")
        p.add_argument("things", nargs="+", metavar="THING")
        registry_flags(p)
    p = gsub.add_parser("list", help="list thing groups and their things")
    registry_flags(p)


def _registry(args: argparse.Namespace) -> Any:
    from ._registry import Registry

    return Registry(args.registry, s3_settings(args))


async def _component(args: argparse.Namespace) -> int:
    async with _registry(args) as registry:
        if args.verb == "publish":
            published = await registry.publish(args.recipe, args.artifacts)
            print(f"published {published.name} {published.version}: {published.recipe_uri}")
            for uri in published.artifacts:
                print(f"  artifact {uri}")
            return 0
        for name, versions in (await registry.components()).items():
            print(f"{name}  {', '.join(versions)}")
        return 0


async def _fleet(args: argparse.Namespace) -> int:
    if args.verb == "group":
        async with _registry(args) as registry:
            if args.group_verb == "list":
                for name, things in (await registry.groups()).items():
                    print(f"thinggroup/{name}  {' '.join(things)}")
                return 0
            change = registry.add_to_group if args.group_verb == "add" \
                else registry.remove_from_group
            members = await change(args.name, args.things)
            print(f"thinggroup/{args.name}: {len(members)} thing(s): {' '.join(members)}")
            return 0
    raise SystemExit(f"edge-actors: fleet {args.verb}: unknown verb")


def main(args: argparse.Namespace) -> int:
    """Run a fleet verb; errors print one line naming what is wrong and return 1."""
    from ..kernel import run
    from ..recipe import RecipeError
    from ._errors import FleetError

    handler = _component if args.command == "component" else _fleet
    try:
        return run(handler, args)
    except (FleetError, RecipeError) as exc:
        print(f"edge-actors: {exc}", file=sys.stderr)
        return 1


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
