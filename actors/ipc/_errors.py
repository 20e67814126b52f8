"""The IPC room's errors, named as Greengrass names them on the wire.

Each class carries the Greengrass error name (``wire_name``) so a socket
client re-raises the same class the server raised.
"""

from __future__ import annotations

from ..kernel._errors import ActorsError, WouldBlock


class IpcError(ActorsError):
    """Base class of the errors an IPC operation can raise."""

    wire_name = "ServiceError"


class ServiceError(IpcError, RuntimeError):
    """The runtime could not carry out the operation (the message says why)."""

    wire_name = "ServiceError"


class UnauthorizedError(IpcError, PermissionError):
    """No accessControl policy allows this component this operation on this resource."""

    wire_name = "UnauthorizedError"


class InvalidArgumentsError(IpcError, ValueError):
    """The request is malformed: a missing field, a wildcard in a publish topic, a bad QoS."""

    wire_name = "InvalidArgumentsError"


class ResourceNotFoundError(IpcError, LookupError):
    """The configuration key or component named by the request does not exist."""

    wire_name = "ResourceNotFoundError"


class FailedUpdateConditionCheckError(IpcError, ValueError):
    """UpdateConfiguration's timestamp is older than the key's current value."""

    wire_name = "FailedUpdateConditionCheckError"


class InvalidTokenError(IpcError, PermissionError):
    """ValidateAuthorizationToken: the token is not valid."""

    wire_name = "InvalidTokenError"


class ComponentNotFoundError(IpcError, LookupError):
    """The component named by the request is not deployed."""

    wire_name = "ComponentNotFoundError"


class ConflictError(IpcError, RuntimeError):
    """The request conflicts with the component's or deployment's current state."""

    wire_name = "ConflictError"


class AccessControlError(IpcError, ValueError):
    """A component's accessControl configuration is invalid (names component and policy)."""

    wire_name = "ServiceError"


class ProtocolError(IpcError, ConnectionError):
    """A frame on the IPC socket was oversize or malformed, or the token was refused."""

    wire_name = "ProtocolError"


class SubscriberFull(WouldBlock):
    """A backpressure subscriber's queue is full; ``publish`` (not ``publish_nowait``) waits."""


class SpoolFull(IpcError, OSError):
    """The MQTT spool holds its maximum of unsent QoS 1 bytes: the message was refused."""

    wire_name = "ServiceError"


class StreamClosed(IpcError, EOFError):
    """The subscription stream was closed (by the caller, the server or a lost connection)."""

    wire_name = "StreamClosed"


ERRORS_BY_WIRE_NAME: dict[str, type[IpcError]] = {
    cls.wire_name: cls
    for cls in (ServiceError, UnauthorizedError, InvalidArgumentsError, ResourceNotFoundError,
                FailedUpdateConditionCheckError, InvalidTokenError, ComponentNotFoundError,
                ConflictError, ProtocolError, StreamClosed)
}

#: Greengrass's error shapes (the SDK knows only these): ours travel as ServiceError.
GREENGRASS_ERRORS = frozenset({"ServiceError", "UnauthorizedError", "InvalidArgumentsError",
                               "ResourceNotFoundError", "FailedUpdateConditionCheckError",
                               "InvalidTokenError", "ComponentNotFoundError", "ConflictError"})


def error_shape(exc: IpcError) -> str:
    """The ``service-model-type`` an error travels as."""
    name = exc.wire_name if exc.wire_name in GREENGRASS_ERRORS else "ServiceError"
    return f"aws.greengrass#{name}"


def error_from_wire(name: str, message: str) -> IpcError:
    """The exception a client raises for an error of shape ``name`` (``aws.greengrass#``
    prefix optional)."""
    return ERRORS_BY_WIRE_NAME.get(name.rpartition("#")[2], ServiceError)(message)
