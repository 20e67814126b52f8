"""Components as actors: the Greengrass lifecycle (install, startup/run, shutdown)
run as real subprocesses, with the states NEW INSTALLED STARTING RUNNING
STOPPING FINISHED ERRORED BROKEN."""

from ._actor import (
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
from ._processes import INSTANCE_VARIABLE, ComponentProcesses, Containment
from ._sweeper import OrphanSweeper, sweep
from ._users import DEFAULT_POSIX_USER, PosixUser, RunWith, RunWithError

__all__ = [
    "DEFAULT_POSIX_USER",
    "INSTANCE_VARIABLE",
    "IN_PROCESS",
    "ComponentActor",
    "ComponentContext",
    "ComponentError",
    "ComponentNotServing",
    "ComponentPaths",
    "ComponentProcesses",
    "Containment",
    "EntryPointError",
    "ErrorTracker",
    "OrphanSweeper",
    "PosixUser",
    "Publisher",
    "Reconfigure",
    "RequestHandler",
    "RunWith",
    "RunWithError",
    "State",
    "interpolate",
    "kill_orphans",
    "sweep",
]
