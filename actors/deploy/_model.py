"""Deployment requests, statuses and records in Greengrass's words."""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_GROUP = "LOCAL_DEPLOYMENT"


class FailureHandling(enum.StrEnum):
    ROLLBACK = "ROLLBACK"
    DO_NOTHING = "DO_NOTHING"


class ComponentUpdatePolicy(enum.StrEnum):
    """Whether running components hear of a deployment first (and may defer it)."""

    NOTIFY_COMPONENTS = "NOTIFY_COMPONENTS"
    SKIP_NOTIFY_COMPONENTS = "SKIP_NOTIFY_COMPONENTS"


class DeploymentStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"  # CancelLocalDeployment, before it changed anything


class DetailedStatus(enum.StrEnum):
    SUCCESSFUL = "SUCCESSFUL"
    FAILED_NO_STATE_CHANGE = "FAILED_NO_STATE_CHANGE"
    FAILED_ROLLBACK_NOT_REQUESTED = "FAILED_ROLLBACK_NOT_REQUESTED"
    FAILED_ROLLBACK_COMPLETE = "FAILED_ROLLBACK_COMPLETE"
    FAILED_UNABLE_TO_ROLLBACK = "FAILED_UNABLE_TO_ROLLBACK"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class DeploymentRequest:
    """What ``greengrass-cli deployment create`` takes."""

    merge: Mapping[str, str] = field(default_factory=dict)  # name -> version
    remove: Sequence[str] = ()
    configuration_update: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    recipe_dir: Path | None = None
    # Recipe documents (parsed JSON) brought with the request, taken as the files of a
    # recipe folder are (a fleet deployment's document carries its recipes).
    recipes: Sequence[Mapping[str, Any]] = ()
    artifact_dir: Path | None = None
    failure_handling: FailureHandling = FailureHandling.ROLLBACK
    group: str = LOCAL_GROUP
    deployment_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # name -> {"posixUser": "user:group", "systemResourceLimits": {"memory": KB, "cpus": n}}
    run_with: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Greengrass's componentUpdatePolicy and configurationValidationPolicy (seconds).
    component_update_policy: ComponentUpdatePolicy = ComponentUpdatePolicy.NOTIFY_COMPONENTS
    component_update_timeout: float = 60.0
    configuration_validation_timeout: float = 30.0

    def to_json(self) -> dict[str, Any]:
        return {
            "deploymentId": self.deployment_id,
            "groupName": self.group,
            "rootComponentVersionsToAdd": dict(self.merge),
            "rootComponentsToRemove": list(self.remove),
            "componentToConfiguration": {k: dict(v) for k, v in
                                         self.configuration_update.items()},
            "recipeDirectoryPath": str(self.recipe_dir) if self.recipe_dir else None,
            "artifactsDirectoryPath": str(self.artifact_dir) if self.artifact_dir else None,
            "failureHandlingPolicy": str(self.failure_handling),
            "componentToRunWithInfo": {k: dict(v) for k, v in self.run_with.items()},
            "componentUpdatePolicy": {"action": str(self.component_update_policy),
                                      "timeoutInSeconds": self.component_update_timeout},
            "configurationValidationPolicy": {
                "timeoutInSeconds": self.configuration_validation_timeout},
        }


@dataclass(frozen=True)
class DeploymentRecord:
    """One deployment's outcome, as ``deployment status`` shows it."""

    deployment_id: str
    group: str
    status: DeploymentStatus
    detailed_status: DetailedStatus | None
    cause: str
    created: float
    finished: float
    components: Mapping[str, str]  # name -> version after the deployment

    def to_json(self) -> dict[str, Any]:
        return {
            "deploymentId": self.deployment_id,
            "groupName": self.group,
            "status": str(self.status),
            "detailedStatus": str(self.detailed_status) if self.detailed_status else None,
            "cause": self.cause,
            "createdOn": self.created,
            "finishedOn": self.finished,
            "components": dict(self.components),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeploymentRecord:
        detailed = data.get("detailedStatus")
        return cls(data["deploymentId"], data["groupName"], DeploymentStatus(data["status"]),
                   DetailedStatus(detailed) if detailed else None, data.get("cause", ""),
                   data.get("createdOn", 0.0), data.get("finishedOn", 0.0),
                   data.get("components", {}))


def now() -> float:
    return time.time()
