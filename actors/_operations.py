"""The CLI's IPC operations, served by the runtime to ``edge-actors`` commands.

Names and fields are greengrass-cli's: CreateLocalDeployment,
GetLocalDeploymentStatus, ListLocalDeployments, ListComponents,
GetComponentDetails, RestartComponent, StopComponent; and GetComponentLogs,
the last lines of a component's JSON-lines log. Only the CLI identity
may call them: its token is written to ``<root>/cli.token`` (mode 0600), so
whoever can read the runtime's root folder may drive it, as with Greengrass's
CLI authorization groups.

And ``Infer`` (ours): the result of an inference component's model on one
image, ``{"componentName": ..., "image": <base64>, "imageName": ...}`` in,
``{"result": <the component's result message>}`` out. The CLI may call it; a
component needs a policy in its accessControl::

    edge-actors.ipc.inference:
      my.App:inference:1:
        operations: [edge-actors#Infer]
        resources: [edge.ImageClassification.ONNX]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from .component import ComponentNotServing
from .config import atomic_write
from .deploy import DeploymentRequest, FailureHandling, RestartComponent, StopComponent
from .errors import ActorsError
from .ipc import (
    CallContext,
    InvalidArgumentsError,
    ResourceNotFoundError,
    ServiceError,
    UnauthorizedError,
)
from .ipc._wire import b64decode

if TYPE_CHECKING:
    from .nucleus import Nucleus

CLI_IDENTITY = "aws.greengrass.Cli"
TOKEN_FILE = "cli.token"
INFERENCE = "edge-actors.ipc.inference"
INFER = "edge-actors#Infer"


def write_cli_token(nucleus: Nucleus) -> None:
    """A fresh CLI token for this runtime, readable by the root folder's owner only."""
    token = nucleus.ipc.register_component(CLI_IDENTITY)
    path = nucleus.root / TOKEN_FILE
    atomic_write(path, token.encode())
    os.chmod(path, 0o600)


def _only_cli(context: CallContext, operation: str) -> None:
    # A component with an aws.greengrass.Cli policy for the operation (checked by the
    # IPC dispatch, which then marks the call authorized) may call it too.
    if context.component != CLI_IDENTITY and not context.authorized:
        raise UnauthorizedError(f"{context.component} is not authorized to call {operation}: "
                                "only the edge-actors CLI may")


def _strings(request: Mapping[str, Any], key: str) -> dict[str, str]:
    value = request.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgumentsError(f"{key} must map component names to versions")
    return {str(k): v for k, v in value.items()}


def register(nucleus: Nucleus) -> None:
    """Serve the CLI operations from ``nucleus``."""
    service = nucleus.ipc

    async def create(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "CreateLocalDeployment")
        remove = request.get("rootComponentsToRemove") or []
        config = request.get("componentToConfiguration") or {}
        if not isinstance(remove, list) or not isinstance(config, dict):
            raise InvalidArgumentsError("rootComponentsToRemove must be a list and "
                                        "componentToConfiguration an object")
        try:
            policy = FailureHandling(request.get("failureHandlingPolicy") or "ROLLBACK")
        except ValueError:
            raise InvalidArgumentsError("failureHandlingPolicy must be ROLLBACK or "
                                        "DO_NOTHING") from None
        recipes, artifacts = (request.get("recipeDirectoryPath"),
                              request.get("artifactsDirectoryPath"))
        deployment = DeploymentRequest(
            merge=_strings(request, "rootComponentVersionsToAdd"), remove=[str(r) for r in remove],
            configuration_update={str(k): {str(a).lower(): b for a, b in v.items()}
                                  for k, v in config.items()},
            recipe_dir=Path(recipes) if recipes else None,
            artifact_dir=Path(artifacts) if artifacts else None, failure_handling=policy)
        await nucleus.submit(deployment)
        return {"deploymentId": deployment.deployment_id}

    async def status(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "GetLocalDeploymentStatus")
        wanted = request.get("deploymentId")
        for record in reversed(nucleus.history()):
            if record.deployment_id == wanted:
                return {"deployment": record.to_json()}
        if wanted in nucleus.pending:
            return {"deployment": {"deploymentId": wanted, "status": "IN_PROGRESS"}}
        raise ResourceNotFoundError(f"no deployment {wanted!r} (see ListLocalDeployments)")

    async def deployments(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "ListLocalDeployments")
        records = [r.to_json() for r in nucleus.history()]
        records += [{"deploymentId": d, "status": "IN_PROGRESS"} for d in nucleus.pending
                    if d not in {r["deploymentId"] for r in records}]
        return {"localDeployments": records}

    def details(name: str) -> dict[str, Any]:
        status = nucleus.status.get(name)
        if status is None:
            raise ResourceNotFoundError(f"component {name} is not deployed")
        return {"componentName": name, "version": status.version, "state": str(status.state),
                "reason": status.reason,
                "configuration": nucleus.configuration.get_nowait(name, [])}

    async def components(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "ListComponents")
        return {"components": [details(name) for name in sorted(nucleus.status)]}

    async def component(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "GetComponentDetails")
        return {"componentDetails": details(str(request.get("componentName")))}

    async def restart(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "RestartComponent")
        name = str(request.get("componentName"))
        details(name)
        return {"restartStatus": await nucleus.control(RestartComponent(name)),
                "message": ""}

    async def stop(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "StopComponent")
        name = str(request.get("componentName"))
        details(name)
        return {"stopStatus": await nucleus.control(StopComponent(name)), "message": ""}

    async def logs(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        _only_cli(context, "GetComponentLogs")
        name = str(request.get("componentName"))
        lines = request.get("lines", 100)
        if not isinstance(lines, int) or lines < 1:
            raise InvalidArgumentsError("lines must be a positive integer")
        path = anyio.Path(nucleus.root / "logs" / f"{name}.log")
        if not await path.exists():
            raise ResourceNotFoundError(f"component {name} has no log (yet) at {path}")
        text = await path.read_text(errors="replace")
        return {"componentName": name,
                "logs": [orjson.loads(line) for line in text.splitlines()[-lines:] if line]}

    async def infer(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        from .ml.requests import Infer

        name = request.get("componentName")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentsError("componentName must name an inference component")
        if context.component != CLI_IDENTITY:
            service.authorizer.check(context.component, INFERENCE, INFER, name)
        image = b64decode(request.get("image"), "image")
        label = request.get("imageName") or ""
        try:
            result = await nucleus.ask(name, Infer(image, str(label)))
        except ComponentNotServing as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except ValueError as exc:  # an image that does not decode, a wrong request
            raise InvalidArgumentsError(str(exc)) from None
        except ActorsError as exc:  # the model failed, no reply in time
            raise ServiceError(str(exc)) from None
        return {"result": result}

    for name, handler in (("CreateLocalDeployment", create), ("GetLocalDeploymentStatus", status),
                          ("ListLocalDeployments", deployments), ("ListComponents", components),
                          ("GetComponentDetails", component), ("RestartComponent", restart),
                          ("StopComponent", stop), ("GetComponentLogs", logs),
                          ("Infer", infer)):
        service.register_operation(name, handler)
