"""In-process entry points for the request-serving tests (``EDGE_ACTORS_IN_PROCESS``)."""

from __future__ import annotations

from typing import Any

import anyio

from actors.component._context import ComponentContext

#: The messages the plain handler was called with, in order.
PLAIN_CALLS: list[Any] = []


async def serving(ctx: ComponentContext) -> None:
    """Serve with an async handler, or (``Handler: plain``) a plain function that raises."""

    async def echo(message: Any) -> tuple[str, Any]:
        await anyio.lowlevel.checkpoint()
        return ("echo", message)

    def plain(message: Any) -> Any:  # not an async function: it fails when called
        PLAIN_CALLS.append(message)
        raise ValueError(f"a plain handler cannot take {message!r}")

    ctx.serve(plain if ctx.configuration.get("Handler") == "plain" else echo)
    await anyio.sleep_forever()
