"""Components as actors: the Greengrass lifecycle (install, startup/run, shutdown)
run as real subprocesses, with the states NEW INSTALLED STARTING RUNNING
STOPPING FINISHED ERRORED BROKEN."""

from ._actor import ComponentActor, ComponentError, ComponentPaths, State, interpolate

__all__ = ["ComponentActor", "ComponentError", "ComponentPaths", "State", "interpolate"]
