"""The inference operation, served by the runtime to the CLI and to components.

``Infer`` (ours): the result of an inference component's model on one image,
``{"componentName": ..., "image": <base64>, "imageName": ...}`` in,
``{"result": <the component's result message>}`` out. The CLI may call it; a
component needs a policy in its accessControl::

    edge-actors.ipc.inference:
      my.App:inference:1:
        operations: [edge-actors#Infer]
        resources: [edge.ImageClassification.ONNX]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..component import ComponentNotServing
from ..errors import ActorsError
from ..ipc import (
    CLI_IDENTITY,
    CallContext,
    InvalidArgumentsError,
    IpcService,
    ResourceNotFoundError,
    ServiceError,
)
from ..ipc._wire import b64decode

INFERENCE = "edge-actors.ipc.inference"
INFER = "edge-actors#Infer"


def register_operations(service: IpcService, *, ask: Callable[[str, Any], Awaitable[Any]]
                        ) -> None:
    """Serve ``Infer``: ``ask`` sends a request to a running component."""

    async def infer(context: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        from .requests import Infer

        name = request.get("componentName")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentsError("componentName must name an inference component")
        if context.component != CLI_IDENTITY:
            service.authorizer.check(context.component, INFERENCE, INFER, name)
        image = b64decode(request.get("image"), "image")
        label = request.get("imageName") or ""
        try:
            result = await ask(name, Infer(image, str(label)))
        except ComponentNotServing as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except ValueError as exc:  # an image that does not decode, a wrong request
            raise InvalidArgumentsError(str(exc)) from None
        except ActorsError as exc:  # the model failed, no reply in time
            raise ServiceError(str(exc)) from None
        return {"result": result}

    service.register_operation("Infer", infer)
