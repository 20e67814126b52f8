"""Deployments: version resolution across groups, the deployment queue, apply,
rollback, history, and crash-safe state under the runtime's root."""

from ..host import Deployed, RestartComponent, StopComponent
from ._deployer import (
    Cancellations,
    ComponentUpdates,
    ConfigurationRejected,
    ConfigurationUpdated,
    DeferralBoard,
    Deferrals,
    DeploymentActor,
    DeploymentFailed,
    describe,
    empty_state,
)
from ._model import (
    LOCAL_GROUP,
    ComponentUpdatePolicy,
    DeploymentRecord,
    DeploymentRequest,
    DeploymentStatus,
    DetailedStatus,
    FailureHandling,
)
from ._packages import PackageStore
from ._resolve import ResolutionError, resolve, start_order

__all__ = [
    "LOCAL_GROUP",
    "Cancellations",
    "ComponentUpdatePolicy",
    "ComponentUpdates",
    "ConfigurationRejected",
    "ConfigurationUpdated",
    "DeferralBoard",
    "Deferrals",
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
    "describe",
    "empty_state",
    "resolve",
    "start_order",
]
