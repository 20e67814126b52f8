"""Components as actors: the Greengrass lifecycle (install, startup/run, shutdown)
run as real subprocesses, with the states NEW INSTALLED STARTING RUNNING
STOPPING FINISHED ERRORED BROKEN."""

from ._actor import (
    INSTANCE_VARIABLE,
    ComponentActor,
    ComponentError,
    ComponentNotServing,
    ComponentPaths,
    ErrorTracker,
    Reconfigure,
    State,
    interpolate,
    kill_orphans,
)
from ._context import IN_PROCESS, ComponentContext, EntryPointError, Publisher, RequestHandler
from ._sweeper import OrphanSweeper, sweep

__all__ = [
    "INSTANCE_VARIABLE",
    "IN_PROCESS",
    "ComponentActor",
    "ComponentContext",
    "ComponentError",
    "ComponentNotServing",
    "ComponentPaths",
    "EntryPointError",
    "ErrorTracker",
    "OrphanSweeper",
    "Publisher",
    "Reconfigure",
    "RequestHandler",
    "State",
    "interpolate",
    "kill_orphans",
    "sweep",
]
