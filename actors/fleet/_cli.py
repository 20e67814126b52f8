"""The fleet verbs of the command line: ``component publish``, ``component list --registry``,
``fleet group|deploy|status|cancel|devices|acl``. ``actors.cli`` adds them to its parser."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..artifacts import S3Settings


def registry_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--registry", required=required, metavar="s3://BUCKET/PREFIX",
                        help="the component registry on S3")
    parser.add_argument("--s3-endpoint", metavar="URL",
                        help="an S3-compatible endpoint (default: AWS's, or AWS_ENDPOINT_URL); "
                        "credentials come from the usual AWS chain (environment, profile)")


def broker_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--broker", required=required, metavar="mqtt[s]://HOST:PORT",
                        help="the MQTT broker that carries deployment notices and status")
    parser.add_argument("--ca", type=Path, help="CA certificate of the broker (TLS)")
    parser.add_argument("--cert", type=Path, help="this client's certificate (TLS)")
    parser.add_argument("--key", type=Path, help="this client's private key (TLS)")
    parser.add_argument("--client-id", help="MQTT client id (default: fleet-controller)")


def s3_settings(args: argparse.Namespace) -> S3Settings:
    from ..artifacts import S3Settings

    endpoint = getattr(args, "s3_endpoint", None)
    return S3Settings(endpoint_url=endpoint, region=getattr(args, "s3_region", None),
                      addressing_style="path" if endpoint else "auto")


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

    p = fsub.add_parser(
        "deploy", help="deploy components to a thing group or a thing",
        description="Create a fleet deployment (its document goes to the registry, the "
        "target's previous deployment is replaced) and roll it out: each device of the target "
        "is notified over MQTT at the rollout rate and reports its status; the rollout stops "
        "when an abort criterion is met. Prints each device's result and a summary; exits 0 "
        "when every device SUCCEEDED.")
    registry_flags(p)
    broker_flags(p)
    p.add_argument("--target", required=True, metavar="thinggroup/NAME|thing/NAME")
    p.add_argument("--component", action="append", default=[], required=True,
                   metavar="NAME=VERSION", help="a root component (repeatable)")
    p.add_argument("--configuration-update", metavar="JSON",
                   help='{"NAME": {"MERGE": {...}, "RESET": ["/pointer", ...]}}')
    p.add_argument("--deployment-name", default="")
    p.add_argument("--deployment-policies", metavar="JSON|@FILE",
                   help="deploymentPolicies in CreateDeployment's shape: "
                   '{"failureHandlingPolicy": "ROLLBACK|DO_NOTHING", "componentUpdatePolicy": '
                   '{"action": "NOTIFY_COMPONENTS|SKIP_NOTIFY_COMPONENTS", "timeoutInSeconds": '
                   '60}, "configurationValidationPolicy": {"timeoutInSeconds": 30}} '
                   "(the defaults); unknown keys are refused")
    p.add_argument("--failure-handling", choices=["ROLLBACK", "DO_NOTHING"],
                   help="failureHandlingPolicy (default: ROLLBACK)")
    p.add_argument("--component-update-policy",
                   choices=["NOTIFY_COMPONENTS", "SKIP_NOTIFY_COMPONENTS"],
                   help="componentUpdatePolicy's action (default: NOTIFY_COMPONENTS)")
    p.add_argument("--component-update-timeout", type=int, metavar="SECONDS",
                   help="componentUpdatePolicy's timeoutInSeconds (default: 60)")
    p.add_argument("--iot-job-configuration", metavar="JSON|@FILE",
                   help="iotJobConfiguration in CreateDeployment's shape "
                   "(jobExecutionsRolloutConfig, abortConfig, timeoutConfig), checked as "
                   "CreateDeployment checks it; instead of the flags below")
    p.add_argument("--maximum-per-minute", type=int,
                   help="rollout: devices notified per minute at most (default: 1000; "
                   "not capped at IoT Jobs' 1,000 here)")
    p.add_argument("--base-rate-per-minute", type=int,
                   help="rollout: start at this rate and raise it exponentially")
    p.add_argument("--increment-factor", type=float, help="(default: 2)")
    p.add_argument("--rate-increase-notified", type=int, metavar="N",
                   help="raise the rate each time N more devices were notified")
    p.add_argument("--rate-increase-succeeded", type=int, metavar="N",
                   help="raise the rate each time N more devices succeeded")
    p.add_argument("--abort", action="append", default=[],
                   metavar="FAILURE_TYPE:PERCENT:MIN_EXECUTED",
                   help="abort criterion, e.g. FAILED:10:5 (FAILED, REJECTED, TIMED_OUT, ALL)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="a device IN_PROGRESS longer than this is TIMED_OUT")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="stop following the rollout after this long (devices still catch up)")

    p = fsub.add_parser("status", help="a fleet deployment's per-device results and summary")
    p.add_argument("deployment_id", metavar="DEPLOYMENT")
    registry_flags(p)
    broker_flags(p, required=False)
    p = fsub.add_parser(
        "cancel", help="cancel a fleet deployment: devices not yet started never start it",
        description="Cancel a fleet deployment, whether its controller (`fleet deploy`) runs "
        "or not: the cancellation is recorded in the registry; each device that has not "
        "finished it gets its notice replaced by a canceled one, so a device that has not "
        "started never does and reports CANCELED (one applying it cancels it while nothing "
        "changed yet); a device's result already reported stands; a running controller "
        "stops its rollout.")
    p.add_argument("deployment_id", metavar="DEPLOYMENT")
    registry_flags(p)
    broker_flags(p)
    p = fsub.add_parser("devices", help="devices and their health (retained on the broker)")
    broker_flags(p)
    p = fsub.add_parser("acl", help="print the broker's ACL file (mosquitto acl_file)",
                        description="Each device (its certificate's common name is its thing "
                        "name: use_identity_as_username true) may read only its own notices "
                        "and write only its own status; the controllers, every fleet topic.")
    p.add_argument("--controller", action="append", default=[], metavar="NAME",
                   help="the certificate common name of a controller (repeatable; default: "
                   "fleet-controller)")


def device_flags(run: argparse.ArgumentParser) -> None:
    """``run --broker --registry``: take fleet deployments (TLS with --mqtt-ca/cert/key)."""
    run.add_argument("--broker", metavar="mqtt[s]://HOST:PORT",
                     help="take fleet deployments for --thing from this MQTT broker (TLS "
                     "with --mqtt-ca, --mqtt-cert, --mqtt-key; needs --registry)")
    registry_flags(run, required=False)


async def start_agent(nucleus: Any, args: argparse.Namespace) -> None:
    """Run a DeviceAgent for ``nucleus`` as one of its actors (stopped with it)."""
    from ..kernel import Actor
    from ._agent import DeviceAgent
    from ._link import BrokerSettings

    if not args.registry:
        raise SystemExit("edge-actors: run --broker needs --registry s3://BUCKET/PREFIX")
    from ._errors import FleetError

    try:
        broker = BrokerSettings.parse(args.broker, client_id=nucleus.thing_name,
                                      ca=args.mqtt_ca, cert=args.mqtt_cert, key=args.mqtt_key)
        agent = DeviceAgent(nucleus, broker, args.registry, s3_settings(args))
    except FleetError as exc:
        raise SystemExit(f"edge-actors: {exc}") from None

    class _AgentActor(Actor):
        async def on_start(self) -> None:
            await self.task_group.start(agent.run)

        async def receive(self, message: Any) -> None:
            raise TypeError(f"the fleet agent takes no messages (got {message!r})")

    await nucleus.system.spawn(_AgentActor, name="fleet-agent", shutdown=10.0)


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
    if args.verb == "acl":
        from ._topics import mosquitto_acl

        print(mosquitto_acl(args.controller or ["fleet-controller"]), end="")
        return 0
    if args.verb == "deploy":
        return await _deploy(args)
    if args.verb == "status":
        return await _status(args)
    if args.verb == "cancel":
        return await _cancel(args)
    if args.verb == "devices":
        return await _devices(args)
    raise SystemExit(f"edge-actors: fleet {args.verb}: unknown verb")


def _broker(args: argparse.Namespace) -> Any:
    from ._link import BrokerSettings

    return BrokerSettings.parse(args.broker, client_id=args.client_id or "fleet-controller",
                                ca=args.ca, cert=args.cert, key=args.key)


def _configuration_update(text: str | None) -> dict[str, Any]:
    from ._errors import FleetError

    if not text:
        return {}
    try:
        data = json.loads(Path(text).read_text() if not text.lstrip().startswith("{")
                          else text)
    except (OSError, json.JSONDecodeError) as exc:
        raise FleetError(f"--configuration-update: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise FleetError('--configuration-update: expected {"NAME": {"MERGE": {...}, '
                         '"RESET": [...]}}')
    return {name: {k.lower(): v for k, v in update.items()} for name, update in data.items()}


def _json_flag(text: str | None, flag: str) -> Any:
    """A flag's JSON, inline or ``@FILE``; ``{}`` when not given."""
    from ._errors import FleetError

    if not text:
        return {}
    try:
        return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except OSError as exc:
        raise FleetError(f"{flag} {text}: cannot read {exc.filename}: {exc.strerror}"
                         ) from None
    except json.JSONDecodeError as exc:
        raise FleetError(f"{flag}: not valid JSON: {exc}") from None


def _iot_job_configuration(args: argparse.Namespace) -> dict[str, Any]:
    """``--iot-job-configuration JSON|@FILE`` checked as CreateDeployment checks it, or the
    rollout, abort and timeout flags; not both."""
    from ._errors import FleetError
    from ._model import AbortCriterion, Rollout, iot_job_configuration

    flags = [flag for flag, value in (
        ("--maximum-per-minute", args.maximum_per_minute),
        ("--base-rate-per-minute", args.base_rate_per_minute),
        ("--increment-factor", args.increment_factor),
        ("--rate-increase-notified", args.rate_increase_notified),
        ("--rate-increase-succeeded", args.rate_increase_succeeded),
        ("--abort", args.abort or None), ("--timeout", args.timeout)) if value is not None]
    if args.iot_job_configuration:
        if flags:
            raise FleetError(f"--iot-job-configuration and {', '.join(flags)}: give the "
                             "JSON or the flags, not both")
        data = _json_flag(args.iot_job_configuration, "--iot-job-configuration")
        try:
            return iot_job_configuration(data)
        except FleetError as exc:
            raise FleetError(f"--iot-job-configuration: {exc}") from None
    abort = []
    for item in args.abort:
        parts = item.split(":")
        if len(parts) != 3:
            raise FleetError(f"--abort {item!r}: expected FAILURE_TYPE:PERCENT:MIN_EXECUTED, "
                             "e.g. FAILED:10:5")
        try:
            abort.append(AbortCriterion.from_json({
                "failureType": parts[0], "thresholdPercentage": float(parts[1]),
                "minNumberOfExecutedThings": int(parts[2])}))
        except ValueError:
            raise FleetError(f"--abort {item!r}: PERCENT and MIN_EXECUTED are numbers"
                             ) from None
    rollout = Rollout(1000 if args.maximum_per_minute is None else args.maximum_per_minute,
                      args.base_rate_per_minute,
                      2.0 if args.increment_factor is None else args.increment_factor,
                      args.rate_increase_notified, args.rate_increase_succeeded)
    return {"rollout": rollout, "abort": tuple(abort), "timeout_seconds": args.timeout}


def _deployment_policies(args: argparse.Namespace) -> dict[str, Any]:
    """``--deployment-policies JSON|@FILE``, checked as CreateDeployment checks it, with the
    shorthand flags (``--failure-handling`` ...) filled in; the two may not disagree."""
    from ._errors import FleetError
    from ._model import deployment_policies

    data = _json_flag(args.deployment_policies, "--deployment-policies")
    try:
        policies = deployment_policies(data)
    except FleetError as exc:
        raise FleetError(f"--deployment-policies: {exc}") from None
    for flag, key, value in (
            ("--failure-handling", "failure_handling", args.failure_handling),
            ("--component-update-policy", "component_update_action",
             args.component_update_policy),
            ("--component-update-timeout", "component_update_timeout",
             args.component_update_timeout)):
        if value is None:
            continue
        if key in policies and policies[key] != value:
            raise FleetError(f"{flag} {value} contradicts --deployment-policies, which says "
                             f"{policies[key]}")
        policies[key] = value
    return policies


async def _deploy(args: argparse.Namespace) -> int:
    from ._controller import Controller, Execution
    from ._errors import FleetError

    policies = _deployment_policies(args)
    job = _iot_job_configuration(args)
    components = {}
    for item in args.component:
        name, _, version = item.partition("=")
        if not name or not version:
            raise FleetError(f"--component {item!r}: expected NAME=VERSION")
        components[name] = version

    def show(execution: Execution) -> None:
        status = execution.status
        if status is not None and status != "QUEUED":
            line = f"{execution.thing}: {status}"
            if execution.cause and status != "SUCCEEDED":
                line += f" ({execution.cause})"
            print(line, flush=True)

    async with _registry(args) as registry:
        controller = Controller(registry, _broker(args))
        things = await controller.things(args.target)
        deployment = await controller.create(
            args.target, components,
            configuration_update=_configuration_update(args.configuration_update),
            **policies, **job, deployment_name=args.deployment_name)
        print(f"deployment {deployment.deployment_id} to {args.target} "
              f"({len(things)} device(s))", flush=True)
        result = await controller.rollout(deployment, things, wait=args.wait, on_change=show)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(result.counts().items()))
    print(f"deployment {deployment.deployment_id}: {summary}"
          + (f"; aborted: {result.aborted}" if result.aborted else ""))
    return 0 if result.counts() == {"SUCCEEDED": len(things)} else 1


async def _status(args: argparse.Namespace) -> int:
    from ._errors import NotInRegistry
    from ._status import merge_status, retained

    async with _registry(args) as registry:
        document = await registry.document(args.deployment_id)
        try:
            saved = await registry.get_json(registry.status_key(args.deployment_id))
        except NotInRegistry:
            saved = {"devices": {}}
    reports = {}
    if args.broker:
        from . import _topics as topics

        reports = await retained(_broker(args), topics.update_filter(args.deployment_id))
    view = merge_status(document, saved, reports)
    for thing, entry in sorted(view["devices"].items()):
        cause = entry.get("failureCause") or ""
        print(f"{thing}  {entry['status']:<12} {entry.get('detailedDeploymentStatus') or ''}"
              + (f"  {cause}" if cause else ""))
    print("summary: " + ", ".join(f"{k} {v}" for k, v in view["summary"].items()))
    return 0


# A device's own final word on a deployment: a cancel leaves it as it is.
_FINISHED = ("SUCCEEDED", "FAILED", "REJECTED", "CANCELED")


async def _cancel(args: argparse.Namespace) -> int:
    """CancelDeployment without the controller: record it in the registry, tell a running
    controller, replace the notices of the devices that have not finished it."""
    import time

    from . import _topics as topics
    from ._controller import cancel_topic
    from ._errors import NotInRegistry
    from ._model import canceled_notice
    from ._status import merge_status, publish_many, retained

    deployment_id = args.deployment_id
    broker = _broker(args)
    async with _registry(args) as registry:
        document = await registry.document(deployment_id)
        target = str(document["targetArn"])
        kind, _, name = target.partition("/")
        things = [name] if kind == "thing" else await registry.group(name)
        await registry.put_json(registry.cancel_key(deployment_id), {
            "deploymentId": deployment_id, "targetArn": target, "canceledOn": time.time()})
        # A controller rolling it out follows this (retained) topic and stops.
        await publish_many(broker, [(cancel_topic(deployment_id),
                                     json.dumps({"canceled": True}).encode())], retain=True)
        reports = await retained(broker, topics.update_filter(deployment_id))
        notices = await retained(broker, topics.notify("+", target))
        replace = sorted(
            thing for thing, n in notices.items()
            if isinstance(n, dict) and n.get("deploymentId") == deployment_id
            and not n.get("canceled")
            and (reports.get(thing) or {}).get("status") not in _FINISHED)
        await publish_many(broker, [(topics.notify(thing, target),
                                     canceled_notice(deployment_id, target, thing))
                                    for thing in replace], retain=True)
        # The view `fleet status` starts from: the target's devices that have no result
        # of their own are CANCELED.
        try:
            saved = await registry.get_json(registry.status_key(deployment_id))
        except NotInRegistry:
            saved = {"deploymentId": deployment_id, "targetArn": target, "devices": {}}
        devices = saved.setdefault("devices", {})
        notified = {t for t, n in notices.items()
                    if isinstance(n, dict) and n.get("deploymentId") == deployment_id}
        for thing in sorted({*things, *notified, *devices}):
            entry = devices.setdefault(thing, {"thingName": thing, "status": "NOT_NOTIFIED"})
            own = (reports.get(thing) or {}).get("status")
            if own in _FINISHED or own == "IN_PROGRESS" or entry.get("status") in (
                    *_FINISHED, "IN_PROGRESS", "TIMED_OUT"):
                continue
            entry.update({"status": "CANCELED", "failureCause": "canceled (fleet cancel)"})
        saved["aborted"] = saved.get("aborted") or "canceled"
        saved["canceledOn"] = time.time()
        saved["summary"] = merge_status(document, saved, {})["summary"]
        await registry.put_json(registry.status_key(deployment_id), saved)
    print(f"deployment {deployment_id}: canceled; {len(replace)} device notice(s) withdrawn")
    return 0


async def _devices(args: argparse.Namespace) -> int:
    from . import _topics as topics
    from ._status import retained

    broker = _broker(args)
    health = await retained(broker, topics.status("+"))
    connection = await retained(broker, topics.connection("+"))
    for thing in sorted({*health, *connection}):
        h = health.get(thing) or {}
        online = (connection.get(thing) or {}).get("connected")
        states = ", ".join(f"{n} {c.get('version')} {c.get('state')}"
                           for n, c in (h.get("components") or {}).items())
        last = h.get("lastDeployment") or {}
        print(f"{thing}  {'online' if online else 'offline'}  "
              f"last: {last.get('deploymentId', '-')} {last.get('status', '')}  {states}")
    return 0


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
