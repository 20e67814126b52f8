"""The component host: the one owner of running components (their actors,
states, IPC identities) and of Greengrass's restart rules between them."""

from ._host import ComponentHost, ComponentStatus
from ._messages import (
    ComponentStartFailed,
    ComponentView,
    Deployed,
    ListComponents,
    ReconfigureComponent,
    RemoveComponent,
    ReportState,
    RestartComponent,
    StartComponent,
    StopComponent,
    UnknownComponent,
)

__all__ = [
    "ComponentHost",
    "ComponentStartFailed",
    "ComponentStatus",
    "ComponentView",
    "Deployed",
    "ListComponents",
    "ReconfigureComponent",
    "RemoveComponent",
    "ReportState",
    "RestartComponent",
    "StartComponent",
    "StopComponent",
    "UnknownComponent",
]
