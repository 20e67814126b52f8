"""Deployments: version resolution across groups, the deployment queue, apply,
rollback, history, and crash-safe state under the runtime's root."""

from ._deployer import (
    Deployed,
    DeploymentActor,
    DeploymentFailed,
    RestartComponent,
    StopComponent,
    empty_state,
)
from ._model import (
    LOCAL_GROUP,
    DeploymentRecord,
    DeploymentRequest,
    DeploymentStatus,
    DetailedStatus,
    FailureHandling,
)
from ._packages import PACKAGES, PackageStore
from ._resolve import ResolutionError, resolve, start_order

__all__ = [
    "LOCAL_GROUP",
    "PACKAGES",
    "Deployed",
    "DeploymentActor",
    "DeploymentFailed",
    "DeploymentRecord",
    "DeploymentRequest",
    "DeploymentStatus",
    "DetailedStatus",
    "FailureHandling",
    "PackageStore",
    "ResolutionError",
    "RestartComponent",
    "StopComponent",
    "empty_state",
    "resolve",
    "start_order",
]
