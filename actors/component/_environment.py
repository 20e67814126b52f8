"""The environment of a component's lifecycle processes, as Greengrass gives it.

Not the runtime's own: the runtime's virtual environment is not on ``PATH``
(``python3`` and ``pip3`` are the system's, so a component's ``pip3 install``
never changes the runtime), ``VIRTUAL_ENV`` and the runtime's AWS credentials
are not passed on. What a component gets: the runtime's other variables (as the
nucleus's processes inherit its environment), the system's ``PATH`` (or the one
the runtime is given in :data:`COMPONENT_PATH`), ``HOME`` set to its work
folder, and Greengrass's documented variables: ``AWS_IOT_THING_NAME``,
``AWS_REGION``, ``AWS_DEFAULT_REGION``, ``SVCUID``,
``AWS_CONTAINER_AUTHORIZATION_TOKEN``,
``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``, ``GG_ROOT_CA_PATH``.

The runtime's own components (``variant.*``, the inference components) that need
the runtime's packages say so: they run ``"${EDGE_ACTORS_PYTHON:-python3}"``
(:data:`RUNTIME_PYTHON`; on Greengrass the fallback applies).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

#: Set on the runtime to give components this PATH instead of the system's.
COMPONENT_PATH = "EDGE_ACTORS_COMPONENT_PATH"
#: The runtime's interpreter, for the runtime's own components only.
RUNTIME_PYTHON = "EDGE_ACTORS_PYTHON"
#: Greengrass's fallback when the device has no region configured.
DEFAULT_REGION = "us-east-1"
_PRIVATE = frozenset({"VIRTUAL_ENV", "PYTHONHOME", "__PYVENV_LAUNCHER__", "AWS_ACCESS_KEY_ID",
                      "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", COMPONENT_PATH})


def _runtime_bins(environ: Mapping[str, str]) -> set[str]:
    """The folders of the runtime's own virtual environment (none when it runs without one)."""
    folders = set()
    if sys.prefix != sys.base_prefix:
        folders.add(os.path.join(sys.prefix, "bin"))
        folders.add(os.path.dirname(sys.executable))
    if environ.get("VIRTUAL_ENV"):
        folders.add(os.path.join(environ["VIRTUAL_ENV"], "bin"))
    return {os.path.realpath(f) for f in folders}


def component_path(environ: Mapping[str, str]) -> str:
    """:data:`COMPONENT_PATH` when the runtime is given one, else its PATH without the
    runtime's virtual environment."""
    configured = environ.get(COMPONENT_PATH)
    if configured:
        return configured
    return _without_runtime(environ.get("PATH", os.defpath), environ.get("VIRTUAL_ENV"))


@functools.lru_cache(maxsize=8)
def _without_runtime(path: str, virtual_env: str | None) -> str:
    # Every step of every component asks: resolving each entry's links once is enough.
    private = _runtime_bins({"VIRTUAL_ENV": virtual_env} if virtual_env else {})
    entries = [entry for entry in path.split(os.pathsep)
               if entry and os.path.realpath(entry) not in private]
    return os.pathsep.join(entries) or os.defpath


def component_environment(environ: Mapping[str, str], given: Mapping[str, str], work: Path,
                          thing_name: str) -> dict[str, str]:
    """The environment for a component's step: ``environ`` is the runtime's, ``given``
    what the runtime adds for this component (SVCUID, its IPC socket, or a PATH)."""
    env = {key: value for key, value in environ.items() if key not in _PRIVATE}
    env["PATH"] = component_path(environ)
    env["HOME"] = str(work)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    env["AWS_REGION"] = region
    env["AWS_DEFAULT_REGION"] = environ.get("AWS_DEFAULT_REGION") or region
    env.update(given)
    if "SVCUID" in env:  # Greengrass sets both (the second for token exchange)
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = env["SVCUID"]
    env["AWS_IOT_THING_NAME"] = thing_name
    env.setdefault("GG_ROOT_CA_PATH", "")
    env[RUNTIME_PYTHON] = sys.executable
    return env
