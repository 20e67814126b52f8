"""The CLI's deployment operations, served by the runtime to ``edge-actors`` commands.

Names, fields and messages are greengrass-cli's: CreateLocalDeployment,
GetLocalDeploymentStatus, ListLocalDeployments, CancelLocalDeployment. Only the
CLI identity may call them, or a component with an ``aws.greengrass.Cli``
policy (see :mod:`actors.ipc._identity`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..ipc import CallContext, InvalidArgumentsError, IpcService, ResourceNotFoundError, only_cli
from ._deployer import Cancellations
from ._model import DeploymentRecord, DeploymentRequest, DeploymentStatus, FailureHandling


def _strings(request: Mapping[str, Any], key: str) -> dict[str, str]:
    value = request.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgumentsError(f"{key} must map component names to versions")
    return {str(k): v for k, v in value.items()}


def register_operations(service: IpcService, *, submit: Callable[[DeploymentRequest], Any],
                        history: Callable[[], list[DeploymentRecord]],
                        pending: set[str], cancellations: Cancellations) -> None:
    """Serve the deployment operations: ``submit`` queues a request, ``history``
    reads the records, ``pending`` holds the ids queued or in progress (the one in
    progress is ``cancellations.current``)."""

    def unfinished(deployment_id: str) -> dict[str, Any]:
        status = DeploymentStatus.IN_PROGRESS if deployment_id == cancellations.current \
            else DeploymentStatus.QUEUED
        return {"deploymentId": deployment_id, "status": str(status)}

    async def create(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "CreateLocalDeployment")
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
            artifact_dir=Path(artifacts) if artifacts else None, failure_handling=policy,
            run_with=request.get("componentToRunWithInfo") or {})
        await submit(deployment)
        return {"deploymentId": deployment.deployment_id}

    async def status(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "GetLocalDeploymentStatus")
        wanted = request.get("deploymentId")
        for record in reversed(history()):
            if record.deployment_id == wanted:
                return {"deployment": record.to_json()}
        if wanted in pending:
            return {"deployment": unfinished(wanted)}
        raise ResourceNotFoundError(f"no deployment {wanted!r} (see ListLocalDeployments)")

    async def deployments(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "ListLocalDeployments")
        records = [r.to_json() for r in history()]
        records += [unfinished(d) for d in pending
                    if d not in {r["deploymentId"] for r in records}]
        return {"localDeployments": records}

    async def cancel(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        # greengrass-cli's CancelLocalDeploymentHandler: its checks, errors and messages.
        only_cli(context, "CancelLocalDeployment")
        wanted = request.get("deploymentId")
        try:
            uuid.UUID(str(wanted))
        except ValueError:
            raise InvalidArgumentsError(
                "Invalid deploymentId format received. DeploymentId is a UUID") from None
        if wanted not in pending:
            if any(r.deployment_id == wanted for r in history()):
                return {"message": "Cancellation request is not processed because deployment "
                                   "is already finished"}
            raise ResourceNotFoundError(f"Cannot find the deployment id provided {wanted}")
        cancellations.cancel(wanted)
        return {"message": f"Cancel request submitted. Deployment ID: {wanted}"}

    for name, handler in (("CreateLocalDeployment", create),
                          ("GetLocalDeploymentStatus", status),
                          ("ListLocalDeployments", deployments),
                          ("CancelLocalDeployment", cancel)):
        service.register_operation(name, handler)
