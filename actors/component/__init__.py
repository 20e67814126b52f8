"""Components as actors: the Greengrass lifecycle (install, startup/run, shutdown)
run as real subprocesses, with the states NEW INSTALLED STARTING RUNNING
STOPPING FINISHED ERRORED BROKEN."""

from ._actor import (
    INSTANCE_VARIABLE,
    ComponentActor,
    ComponentError,
    ComponentPaths,
    ErrorTracker,
    State,
    interpolate,
    kill_orphans,
)

__all__ = [
    "INSTANCE_VARIABLE",
    "ComponentActor",
    "ComponentError",
    "ComponentPaths",
    "ErrorTracker",
    "State",
    "interpolate",
    "kill_orphans",
]
