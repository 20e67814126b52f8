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
                FailedUpdateConditionCheckError, ProtocolError, StreamClosed)
}


def error_from_wire(name: str, message: str) -> IpcError:
    """The exception a client raises for an error reply ``{"type": name, "message": ...}``."""
    return ERRORS_BY_WIRE_NAME.get(name, ServiceError)(message)
