"""The CLI's component operations, served by the runtime to ``edge-actors`` commands.

Names and fields are greengrass-cli's: ListComponents, GetComponentDetails,
RestartComponent, StopComponent; and GetComponentLogs, the last lines of a
component's JSON-lines log. Only the CLI identity may call them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import orjson

from ..component import State
from ..errors import ActorsError
from ..ipc import (
    CallContext,
    InMemoryConfiguration,
    InvalidArgumentsError,
    IpcService,
    ResourceNotFoundError,
    ServiceError,
    only_cli,
)
from ..ipc._service import Handler
from ..layout import Layout
from ._host import ComponentStatus
from ._messages import RestartComponent, StopComponent, UnknownComponent

#: Bytes of component details in one ListComponents reply (eventstream allows 24 MiB).
REPLY_BUDGET = 8 << 20


def register_operations(service: IpcService, *, layout: Layout,
                        configuration: InMemoryConfiguration,
                        table: Callable[[], Mapping[str, ComponentStatus]],
                        control: Callable[[RestartComponent | StopComponent], Awaitable[str]],
                        pause: Callable[[str], None] | None = None,
                        resume: Callable[[str], None] | None = None) -> None:
    """Serve the component operations: ``table`` gives the host's records,
    ``control`` restarts or stops a component (through the deployment queue),
    ``pause``/``resume`` freeze and thaw a component's processes (its cgroup's
    freezer, or SIGSTOP/SIGCONT of its process groups)."""

    def details(name: str) -> dict[str, Any]:
        status = table().get(name)
        if status is None:
            raise ResourceNotFoundError(f"component {name} is not deployed")
        return {"componentName": name, "version": status.version, "state": str(status.state),
                "reason": status.reason, "reportedState": status.reported or None,
                "configuration": configuration.get_nowait(name, [])}

    async def components(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        """Greengrass's ListComponents, paged when large (ours: ``maxResults`` and
        ``nextToken``, as AWS list APIs page): a reply stays under REPLY_BUDGET."""
        only_cli(context, "ListComponents")
        limit = request.get("maxResults")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise InvalidArgumentsError("maxResults must be a positive integer")
        after = request.get("nextToken") or ""
        names = [name for name in sorted(table()) if name > after]
        page: list[dict[str, Any]] = []
        size = 0
        for name in names[:limit]:
            entry = details(name)
            size += len(orjson.dumps(entry, default=str))
            if page and size > REPLY_BUDGET:
                break
            page.append(entry)
        reply: dict[str, Any] = {"components": page}
        if len(page) < len(names):
            reply["nextToken"] = page[-1]["componentName"]
        return reply

    async def component(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "GetComponentDetails")
        return {"componentDetails": details(str(request.get("componentName")))}

    async def _control(message: RestartComponent | StopComponent) -> str:
        details(message.name)
        try:
            return await control(message)
        except UnknownComponent as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except ActorsError as exc:
            raise ServiceError(str(exc)) from None

    async def restart(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "RestartComponent")
        name = str(request.get("componentName"))
        return {"restartStatus": await _control(RestartComponent(name)), "message": ""}

    async def stop(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "StopComponent")
        name = str(request.get("componentName"))
        return {"stopStatus": await _control(StopComponent(name)), "message": ""}

    async def logs(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        only_cli(context, "GetComponentLogs")
        name = str(request.get("componentName"))
        lines = request.get("lines", 100)
        if not isinstance(lines, int) or lines < 1:
            raise InvalidArgumentsError("lines must be a positive integer")
        path = anyio.Path(layout.log(name))
        if not await path.exists():
            raise ResourceNotFoundError(f"component {name} has no log (yet) at {path}")
        text = await path.read_text(errors="replace")
        return {"componentName": name,
                "logs": [orjson.loads(line) for line in text.splitlines()[-lines:] if line]}

    def freezer(operation: str, act: Callable[[str], None]) -> Handler:
        async def handler(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
            name = str(request.get("componentName"))
            status = table().get(name)
            if status is None:
                raise ResourceNotFoundError(f"component {name} is not deployed")
            if status.state is not State.RUNNING:
                raise ServiceError(f"{operation}: component {name} is {status.state}, not "
                                   "RUNNING")
            try:
                await anyio.to_thread.run_sync(act, name)
            except LookupError as exc:
                raise ServiceError(f"{operation}: {exc}") from None
            return {}
        return handler

    if pause is not None and resume is not None:
        service.register_operation("PauseComponent", freezer("PauseComponent", pause))
        service.register_operation("ResumeComponent", freezer("ResumeComponent", resume))

    for name, handler in (("ListComponents", components), ("GetComponentDetails", component),
                          ("RestartComponent", restart), ("StopComponent", stop),
                          ("GetComponentLogs", logs)):
        service.register_operation(name, handler)
