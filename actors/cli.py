"""The ``edge-actors`` command line: a thin layer over Nucleus and the bench harness.

Verbs and flags follow ``greengrass-cli`` where it has them (``deployment``,
``component``, ``logs``, ``--recipeDir``, ``--artifactDir``, ``--merge``,
``--remove``, ``--update-config``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = Path(".edge-actors")
#: ``run``'s flags that --init-config may set, and their defaults when neither sets them.
RUN_DEFAULTS: dict[str, Any] = {
    "root": DEFAULT_ROOT, "thing_name": "edge-actors-local", "mqtt_ca": None,
    "mqtt_cert": None, "mqtt_key": None, "broker": None, "registry": None,
    "s3_endpoint": None, "component_default_user": None, "platform_override": None}


def _root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="the runtime's root folder: state, packages, work folders, logs "
                        "(default: ./.edge-actors)")


def _deployment_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-r", "--recipeDir", "--recipe-dir", dest="recipe_dir", type=Path,
                        help="folder of recipe files for the local deployment (several "
                        "versions of a component may be there)")
    parser.add_argument("-a", "--artifactDir", "--artifact-dir", dest="artifact_dir", type=Path,
                        help="folder of artifacts laid out as <name>/<version>/...: each "
                        "deployed version's whole folder is copied in as its artifacts, again "
                        "at each deployment")
    parser.add_argument("-m", "--merge", action="append", default=[], metavar="NAME=VERSION",
                        help="add or update a root component (repeatable)")
    parser.add_argument("--remove", action="append", default=[], metavar="NAME",
                        help="remove a root component (repeatable)")
    parser.add_argument("--update-config", dest="update_config", metavar="JSON_OR_FILE",
                        help='configuration updates: {"name": {"MERGE": {...}, "RESET": [...]}}')
    parser.add_argument("--failure-handling", choices=["ROLLBACK", "DO_NOTHING"],
                        default="ROLLBACK", help="on a failed deployment (default: ROLLBACK)")
    parser.add_argument("--runWith", "--run-with", dest="run_with", action="append", default=[],
                        metavar="NAME:posixUser=USER[:GROUP]",
                        help="the user a component runs as when the runtime runs as root "
                        "(repeatable)")
    parser.add_argument("--systemLimits", "--system-limits", dest="system_limits",
                        metavar="JSON_OR_FILE", help='per-component resource limits: '
                        '{"name": {"cpus": 0.5, "memory": 65536}} (memory in KB)')


def _parser() -> argparse.ArgumentParser:
    from .fleet import _cli as fleet_cli

    parser = argparse.ArgumentParser(
        prog="edge-actors",
        description="An asyncio actor runtime that deploys and supervises Greengrass v2 "
        "components on edge devices.")
    parser.add_argument("--version", action="version", version=f"edge-actors {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="start the runtime in the foreground (optionally with a local deployment)",
        description="Start the runtime: the components deployed under --root start again in "
        "dependency order. With --merge/--remove/--update-config, a local deployment is "
        "applied first, as `greengrass-cli deployment create` does. Runs until "
        "SIGTERM/SIGINT, or with --exit-when-done until every component is FINISHED.")
    _root(run)
    run.add_argument("--init-config", type=Path, metavar="FILE",
                     help="the runtime's configuration file, in the shape of Greengrass's "
                     "config.yaml: system: {thingName, certificateFilePath, privateKeyPath, "
                     "rootCaPath, rootpath} and services: {aws.greengrass.Nucleus: "
                     "{configuration: {iotDataEndpoint, mqtt: {port}, awsRegion, "
                     "runWithDefault: {posixUser}, platformOverride, fleet: {registry, "
                     "s3Endpoint}}}}; the flags given override it (see the README)")
    _deployment_flags(run)
    run.add_argument("--thing-name", "--thing", default="edge-actors-local",
                     help="{iot:thingName}, and the MQTT client id (default: edge-actors-local)")
    run.add_argument("--platform-override", metavar="JSON",
                     help='manifest platform keys to replace or add, e.g. '
                     '\'{"architecture": "arm", "architecture.detail": "arm71"}\'')
    run.add_argument("--mqtt-host", help="MQTT broker for PublishToIoTCore/SubscribeToIoTCore "
                     "(AWS IoT Core's endpoint, or any broker); none by default")
    run.add_argument("--mqtt-port", type=int, default=8883, help="(default: 8883)")
    run.add_argument("--mqtt-ca", type=Path, help="CA certificate for TLS")
    run.add_argument("--mqtt-cert", type=Path, help="the thing's client certificate")
    run.add_argument("--mqtt-key", type=Path, help="the thing's private key")
    run.add_argument("--mqtt-version", choices=["mqtt5", "mqtt3"], default="mqtt5",
                     help="the MQTT version the bridge speaks, as the nucleus's mqtt.version: "
                     "mqtt5 carries PublishToIoTCore's MQTT 5 fields, mqtt3 (3.1.1) drops "
                     "them; retain is kept in both (default: mqtt5)")
    run.add_argument("--component-default-user", metavar="USER[:GROUP]",
                     help="who components run as when the runtime runs as root (steps with "
                     "RequiresPrivilege: true run as root); a deployment's runWith posixUser "
                     "overrides it (default: $EDGE_ACTORS_COMPONENT_USER, else "
                     "ggc_user:ggc_group, created when missing)")
    run.add_argument("--containment", choices=["auto", "cgroup2", "cgroup1", "process-group"],
                     default="auto", help="how each component's processes are kept together: "
                     "a cgroup per component (v2 or v1), or the process-group and subreaper "
                     "fallback; auto takes the first the runtime may create (default: auto)")
    run.add_argument("--exit-when-done", action="store_true",
                     help="exit once every component is FINISHED (or one is BROKEN)")
    run.add_argument("--timeout", type=float, default=600.0,
                     help="with --exit-when-done, the seconds to wait (default: 600)")
    fleet_cli.device_flags(run)
    # None: not given, so --init-config's value (else the default in RUN_DEFAULTS) holds.
    run.set_defaults(**dict.fromkeys(RUN_DEFAULTS), s3_region=None)
    run.add_argument("--watch", type=Path, metavar="DIR",
                     help="keep the deployed inference components (those configured with an "
                     "ImageDirectory) watching DIR: each image written there is classified "
                     "and its result published (sets ImageDirectory and WatchDirectory in the "
                     "deployment; the runtime runs until SIGTERM/SIGINT)")

    deployment = sub.add_parser("deployment", help="create, list, show and cancel deployments")
    dsub = deployment.add_subparsers(dest="verb", required=True)
    p = dsub.add_parser("create", help="submit a local deployment to the running runtime",
                        description="Submit a local deployment to the runtime running on --root "
                        "(over its IPC socket), as `greengrass-cli deployment create` does; "
                        "prints the deployment id. Follow it with `deployment status`.")
    _root(p)
    _deployment_flags(p)
    for verb, text in (("list", "list the recorded deployments"),
                       ("status", "show one deployment's status"),
                       ("cancel", "cancel a queued deployment, or the one in progress while "
                                  "it has changed nothing yet (in the running runtime)")):
        p = dsub.add_parser(verb, help=text)
        _root(p)
        if verb in ("status", "cancel"):
            p.add_argument("-i", "--deploymentId", dest="deployment_id", required=True)

    component = sub.add_parser("component", help="components deployed under --root")
    csub = component.add_subparsers(dest="verb", required=True)
    p = csub.add_parser("list", help="list the deployed components and their versions "
                        "(with --registry: the versions published there)")
    _root(p)
    fleet_cli.registry_flags(p, required=False)
    p = csub.add_parser("details", help="one component's version and configuration")
    _root(p)
    p.add_argument("-n", "--name", required=True)
    for verb, text in (("restart", "restart a component (and its HARD dependents)"),
                       ("stop", "stop a component until it is restarted or redeployed")):
        p = csub.add_parser(verb, help=f"{text}, in the running runtime")
        _root(p)
        p.add_argument("-n", "--names", required=True, help="the component")
    fleet_cli.add_component_verbs(csub)
    fleet_cli.add_fleet(sub)

    logs = sub.add_parser("logs", help="component logs (JSON lines under <root>/logs)")
    lsub = logs.add_subparsers(dest="verb", required=True)
    p = lsub.add_parser("get", help="print a component's log")
    _root(p)
    p.add_argument("-n", "--name", required=True, help="the component")
    p.add_argument("--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--filter", action="append", default=[],
                   help="only lines whose message contains this text (repeatable: all must)")

    infer = sub.add_parser(
        "infer", help="run a deployed inference component's model on image files",
        description="Send each image to the inference component running on --root (the "
        "Infer IPC operation) and print its result message, in Greengrass's format, one "
        "JSON line per image.")
    _root(infer)
    infer.add_argument("-n", "--name", required=True, help="the inference component")
    infer.add_argument("images", nargs="+", type=Path)

    recipe = sub.add_parser("recipe", help="recipe tools")
    rsub = recipe.add_subparsers(dest="verb", required=True)
    p = rsub.add_parser("check", help="validate recipe files offline",
                        description="Validate recipes as Greengrass would, whatever machine "
                        "this is: exit 0 when all are valid, otherwise print each error (file, "
                        "key path, what is expected) and exit 1. Warnings (a placeholder "
                        "Digest, no manifest for the platform) do not fail the check.")
    p.add_argument("--platform", metavar="KEY=VALUE,...",
                   help="the device to select manifests for, e.g. os=linux,architecture=arm "
                   "(default: this machine; keys as in a manifest's Platform)")
    p.add_argument("files", nargs="+", type=Path)

    from .ml.model_cli import add_commands as add_model_commands

    add_model_commands(sub)  # compile, model info|run

    bench = sub.add_parser("bench", help="run the benchmark harness (python -m bench)",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _merge(items: list[str]) -> dict[str, str]:
    merge = {}
    for item in items:
        name, _, version = item.partition("=")
        merge[name] = version or "*"
    return merge


def _remote(root: Path, operation: str, request: dict[str, Any] | list[dict[str, Any]]
            ) -> Any:
    """Call ``operation`` on the runtime running on ``root``, as the CLI identity (once
    per request when given a list of them, on one connection; a list of answers)."""
    from .ipc import IpcError
    from .ipc.client import IpcClient
    from .kernel import run
    from .layout import Layout

    layout = Layout(root)
    socket, token_file = layout.ipc_socket, layout.cli_token
    if not socket.exists() or not token_file.exists():
        raise SystemExit(f"edge-actors: no runtime is running on {root} (no {socket.name}); "
                         f"start one with `edge-actors run --root {root}`")

    async def call() -> Any:
        client = await IpcClient(str(socket), token_file.read_text().strip()).connect()
        try:
            if isinstance(request, list):
                return [await client.call(operation, r) for r in request]
            return await client.call(operation, request)
        finally:
            await client.close()

    try:
        return run(call)
    except (IpcError, OSError) as exc:
        raise SystemExit(f"edge-actors: {operation} on the runtime at {root} failed: "
                         f"{exc}") from None


def _running(root: Path) -> bool:
    """Whether a runtime answers on ``root``'s socket (one killed leaves the file)."""
    import socket

    from .layout import Layout

    layout = Layout(root)
    if not (layout.ipc_socket.exists() and layout.cli_token.exists()):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(layout.ipc_socket))
        except OSError:
            return False
    return True


def _run_with(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """--runWith and --systemLimits as a deployment's componentToRunWithInfo."""
    found: dict[str, dict[str, Any]] = {}
    for item in args.run_with:
        name, _, setting = item.partition(":")
        key, _, user = setting.partition("=")
        if not name or key != "posixUser" or not user:
            raise SystemExit(f"edge-actors: --runWith {item!r}: expected "
                             "NAME:posixUser=USER[:GROUP]")
        found.setdefault(name, {})["posixUser"] = user
    if args.system_limits:
        limits = _json_or_file(args.system_limits, "--systemLimits")
        if not isinstance(limits, dict) or not all(isinstance(v, dict) for v in limits.values()):
            raise SystemExit('edge-actors: --systemLimits: expected {"name": {"cpus": n, '
                             '"memory": KB}}')
        for name, value in limits.items():
            found.setdefault(name, {})["systemResourceLimits"] = value
    return found


def _json_or_file(text: str, flag: str) -> Any:
    """A flag's JSON, given inline or as the path of a file holding it."""
    path = Path(text)
    raw = path.read_text() if not text.lstrip().startswith("{") and path.exists() else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"edge-actors: {flag}: not valid JSON: {exc}") from None


def _update_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    data = _json_or_file(text, "--update-config")
    if not isinstance(data, dict):
        raise SystemExit("edge-actors: --update-config: expected an object of component names")
    return {name: {k.lower(): v for k, v in update.items()} for name, update in data.items()}


async def _run(args: argparse.Namespace) -> int:
    from .component import RunWith
    from .ipc import MqttSettings
    from .nucleus import Nucleus

    try:
        override = json.loads(args.platform_override) if args.platform_override else None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"edge-actors: --platform-override: not valid JSON: {exc}") from None
    mqtt = None if not args.mqtt_host else MqttSettings(
        args.mqtt_host, args.mqtt_port, ca_file=args.mqtt_ca, cert_file=args.mqtt_cert,
        key_file=args.mqtt_key, version=args.mqtt_version)
    s3 = None
    if args.s3_endpoint or args.s3_region:  # the registry's S3 serves the artifacts too
        from .fleet._cli import s3_settings

        s3 = s3_settings(args)
    nucleus = Nucleus(args.root, handle_signals=True, thing_name=args.thing_name,
                      platform_override=override, mqtt=mqtt, containment=args.containment,
                      run_with=RunWith(posix_user=args.component_default_user), s3=s3)
    # Listen before the start: components deployed earlier start with the runtime.
    nucleus.on_state(lambda name, state, reason: print(
        f"[state] {name}: {state}" + (f" ({reason})" if reason else ""), flush=True))
    nucleus.on_output(lambda name, line: print(f"[{name}] {line}", flush=True))
    bar = contextlib.ExitStack()
    if sys.stdout.isatty():  # a progress bar for artifact downloads, on terminals only
        from .artifacts import progress_bar

        nucleus.on_progress(bar.enter_context(progress_bar()))
    published: dict[str, list[Any]] = {}
    nucleus.on_message(lambda topic, payload: published.setdefault(topic, []).append(payload))
    try:
        with bar:
            return await _serve(nucleus, args)
    finally:
        for topic, payloads in published.items():
            print(f"published {len(payloads)} message(s) on {topic}; the last: "
                  f"{json.dumps(payloads[-1])[:300]}", flush=True)


async def _serve(nucleus: Any, args: argparse.Namespace) -> int:
    from .nucleus import StartInterrupted

    try:
        return await _serve_started(nucleus, args)
    except StartInterrupted as exc:
        print(f"edge-actors: {exc}", file=sys.stderr)
        return 0


async def _serve_started(nucleus: Any, args: argparse.Namespace) -> int:
    from .component import RunWithError, State
    from .deploy import DeploymentRequest, FailureHandling

    async with nucleus:
        code = 0
        if getattr(args, "broker", None):  # fleet deployments: `run --broker --registry`
            from .fleet._cli import start_agent

            await start_agent(nucleus, args)
        update = _update_config(args.update_config)
        if args.watch is not None:
            update = _watching(args, update)
        if args.merge or args.remove or update:
            try:
                record = await nucleus.deploy(DeploymentRequest(
                    merge=_merge(args.merge), remove=args.remove,
                    configuration_update=update,
                    recipe_dir=args.recipe_dir, artifact_dir=args.artifact_dir,
                    failure_handling=FailureHandling(args.failure_handling),
                    run_with=_run_with(args)))
            except RunWithError as exc:  # an unknown posixUser: nothing was deployed
                print(f"edge-actors: {exc}", file=sys.stderr, flush=True)
                return 1
            line = f"deployment {record.deployment_id}: {record.status} {record.detailed_status}"
            print(line + (f": {record.cause}" if record.cause else ""), flush=True)
            code = 0 if record.status == "SUCCEEDED" else 1
        if not args.exit_when_done or args.watch is not None:
            await nucleus.system.serve()
            return code
        try:
            await nucleus.wait_states(nucleus.status, {State.FINISHED, State.BROKEN},
                                      timeout=args.timeout)
        except TimeoutError:
            print(f"edge-actors: components still running after {args.timeout:g} s: "
                  + ", ".join(f"{n} {s.state}" for n, s in nucleus.status.items()
                              if s.state is not State.FINISHED), file=sys.stderr)
            return 1
        broken = [n for n, s in nucleus.status.items() if s.state is State.BROKEN]
        if broken:
            print(f"edge-actors: BROKEN: {', '.join(broken)}", file=sys.stderr)
            return 1
        return code


def _watching(args: argparse.Namespace, update: dict[str, Any]) -> dict[str, Any]:
    """``update`` plus ImageDirectory=DIR, WatchDirectory for each --merge component whose
    recipe (in --recipeDir) configures an ImageDirectory: the inference components."""
    from .recipe import load_recipe_dir

    folder = args.watch.absolute()
    if not folder.is_dir():
        raise SystemExit(f"edge-actors: --watch {args.watch}: not a folder; create it first")
    recipes = load_recipe_dir(args.recipe_dir) if args.recipe_dir else {}
    watching = [name for name in _merge(args.merge)
                if any("ImageDirectory" in r.default_configuration for r in recipes.get(name, []))]
    if not watching:
        raise SystemExit("edge-actors: --watch: no inference component (a recipe with an "
                         "ImageDirectory) among the --merge components of --recipeDir")
    update = dict(update)
    for name in watching:
        entry = dict(update.get(name) or {})
        entry["merge"] = {**(entry.get("merge") or {}), "ImageDirectory": str(folder),
                          "WatchDirectory": "true"}
        update[name] = entry
    print(f"watching {folder} with {', '.join(watching)}; stop with Ctrl-C", flush=True)
    return update


def _state(root: Path) -> dict[str, Any]:
    from .config import JsonStore
    from .deploy import empty_state
    from .layout import Layout

    state: dict[str, Any] = JsonStore(Layout(root).state).load(empty_state())
    return state


def _offline(args: argparse.Namespace) -> int:
    from .deploy import DeploymentActor

    if args.command == "deployment" and args.verb == "create":
        answer = _remote(args.root, "CreateLocalDeployment", {
            "recipeDirectoryPath": str(args.recipe_dir.absolute()) if args.recipe_dir else None,
            "artifactsDirectoryPath": str(args.artifact_dir.absolute())
            if args.artifact_dir else None,
            "rootComponentVersionsToAdd": _merge(args.merge),
            "rootComponentsToRemove": args.remove,
            "componentToConfiguration": _update_config(args.update_config),
            "failureHandlingPolicy": args.failure_handling,
            "componentToRunWithInfo": _run_with(args)})
        print(f"Local deployment submitted! Deployment Id: {answer['deploymentId']}")
        return 0
    if args.command == "deployment" and args.verb == "cancel":
        answer = _remote(args.root, "CancelLocalDeployment",
                         {"deploymentId": args.deployment_id})
        print(answer["message"])
        return 0
    if args.command == "infer":
        from .ipc._wire import b64encode

        missing = [str(p) for p in args.images if not p.is_file()]
        if missing:
            print(f"edge-actors: no such image file: {', '.join(missing)}", file=sys.stderr)
            return 1
        answers = _remote(args.root, "Infer", [
            {"componentName": args.name, "image": b64encode(p.read_bytes()), "imageName": p.name}
            for p in args.images])
        for answer in answers:
            print(json.dumps(answer["result"]), flush=True)
        return 0
    if args.command == "component" and args.verb in ("restart", "stop"):
        operation = "RestartComponent" if args.verb == "restart" else "StopComponent"
        answer = _remote(args.root, operation, {"componentName": args.names})
        outcome = answer.get("restartStatus") or answer.get("stopStatus")
        print(f"{args.verb} {args.names}: {outcome}")
        return 0
    if args.command == "deployment":
        records = DeploymentActor.history_at(args.root)
        if args.verb == "list":
            for r in reversed(records):
                print(f"{r.deployment_id}  {r.status:<9} {r.detailed_status or '':<30} "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.created))}")
            return 0
        match = [r for r in records if r.deployment_id == args.deployment_id]
        if not match:
            print(f"edge-actors: no deployment {args.deployment_id} under {args.root}",
                  file=sys.stderr)
            return 1
        print(json.dumps(match[0].to_json(), indent=2))
        return 0
    if args.command == "component" and _running(args.root):
        # The runtime's own view: states and what components reported (UpdateState).
        if args.verb == "list":
            token = None
            while True:  # page by page: a device may run many components
                answer = _remote(args.root, "ListComponents",
                                 {"maxResults": 500, **({"nextToken": token} if token else {})})
                for entry in answer["components"]:
                    reported = entry.get("reportedState")
                    print(f"{entry['componentName']}  {entry['version']}  {entry['state']}"
                          + (f"  (reported {reported})" if reported else ""))
                token = answer.get("nextToken")
                if not token:
                    return 0
        details = _remote(args.root, "GetComponentDetails", {"componentName": args.name})
        print(json.dumps(details["componentDetails"], indent=2))
        return 0
    if args.command == "component":
        components = _state(args.root)["components"]
        if args.verb == "list":
            for name, entry in sorted(components.items()):
                print(f"{name}  {entry['version']}")
            return 0
        if args.name not in components:
            print(f"edge-actors: component {args.name} is not deployed under {args.root}",
                  file=sys.stderr)
            return 1
        print(json.dumps({"componentName": args.name, **components[args.name]}, indent=2))
        return 0
    return _logs(args)


def _logs(args: argparse.Namespace) -> int:
    from .layout import Layout

    path = Layout(args.root).log(args.name)
    if not path.exists() and not args.follow:
        print(f"edge-actors: no log for {args.name} at {path}", file=sys.stderr)
        return 1
    position = 0
    while True:
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(position)
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written
                    position += len(raw)
                    entry = json.loads(raw)
                    if all(f in entry.get("message", "") for f in args.filter):
                        print(f"{entry.get('timestamp')} {entry.get('level')} "
                              f"{entry.get('thread')}: {entry.get('message')}", flush=True)
        if not args.follow:
            return 0
        time.sleep(0.2)


def _check(files: list[Path], platform: str | None = None) -> int:
    from .recipe import RecipeError, load_recipe, other_platform

    try:
        device = other_platform(platform) if platform else None
    except ValueError as exc:
        raise SystemExit(f"edge-actors: --platform: {exc}") from None
    failed = 0
    for path in files:
        try:
            recipe = load_recipe(path, device)
        except RecipeError as exc:
            print(exc, file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok ({recipe.name} {recipe.version}, for {recipe.platform})")
            for warning in recipe.warnings:
                print(f"warning: {warning}", file=sys.stderr)
    return 1 if failed else 0


def _bench(arguments: list[str]) -> int:
    """The benchmark harness, in a process of its own: the product never imports it."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("bench") is None:
        print("edge-actors: the benchmark harness is not installed here; run it from a "
              "checkout of the repository: python -m bench", file=sys.stderr)
        return 2
    return subprocess.run([sys.executable, "-m", "bench", *arguments]).returncode


def _settle_run(args: argparse.Namespace) -> None:
    """``run``'s settings: the flags given, else ``--init-config``'s, else the defaults."""
    from .init_config import NUCLEUS, InitConfigError, load

    given = load(args.init_config).values if args.init_config is not None else {}
    for dest, default in (*RUN_DEFAULTS.items(), ("s3_region", None)):
        if getattr(args, dest, None) is None:
            setattr(args, dest, given.get(dest, default))
    if args.broker and not args.registry:
        if args.init_config is None:
            raise InitConfigError("run --broker needs --registry s3://BUCKET/PREFIX")
        raise InitConfigError(
            f"{args.init_config}: services.{NUCLEUS}.configuration.fleet.registry: missing; "
            f"fleet deployments (the broker {args.broker}) need the component registry: "
            "s3://BUCKET/PREFIX there, or --registry")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bench":
        return _bench(args.args)
    if args.command == "recipe":
        return _check(args.files, args.platform)
    if args.command in ("compile", "model"):
        from .ml import model_cli

        return (model_cli.compile_command if args.command == "compile"
                else model_cli.model_command)(args)
    if args.command == "fleet" or (args.command == "component" and (
            args.verb == "publish" or getattr(args, "registry", None))):
        from .fleet._cli import main as fleet_main

        return fleet_main(args)
    if args.command in ("deployment", "component", "logs", "infer"):
        return _offline(args)
    from .init_config import InitConfigError
    from .kernel import run
    from .recipe import RecipeError

    try:
        _settle_run(args)
    except InitConfigError as exc:  # before anything starts
        print(f"edge-actors: {exc}", file=sys.stderr)
        return 2
    try:
        return run(_run, args)
    except RecipeError as exc:
        print(f"edge-actors: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
