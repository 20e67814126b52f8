"""The Greengrass IPC service model: one declaration of every operation.

Each :class:`Operation` names its request, response and (streaming) event
shapes as the AWS IoT Device SDK knows them (``aws.greengrass#<Op>Request``
...), whether it streams, the ``accessControl`` service and the request field
that is the resource its authorization checks, and, for the operations that
a separate Greengrass component provides, that component (they answer as the
nucleus does while it is not deployed). The server's dispatch, the wire's
``service-model-type`` headers and the project's own client all read this
table: adding an operation is one entry.

This module imports nothing of the server: clients import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GREENGRASS = "aws.greengrass"
OURS = "edge-actors"

PUBSUB = "aws.greengrass.ipc.pubsub"
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
LIFECYCLE = "aws.greengrass.ipc.lifecycle"
COMPONENT_METRIC = "aws.greengrass.ipc.componentmetric"
CLI = "aws.greengrass.Cli"
INFERENCE = "edge-actors.ipc.inference"

SHADOW_MANAGER = "aws.greengrass.ShadowManager"
SECRET_MANAGER = "aws.greengrass.SecretManager"
CLIENT_DEVICE_AUTH = "aws.greengrass.clientdevices.Auth"
DEBUG_CONSOLE = "aws.greengrass.LocalDebugConsole"
STREAM_MANAGER = "aws.greengrass.StreamManager"

#: identities that may call every operation without a policy (the runtime's CLI)
TRUSTED = frozenset({CLI})


@dataclass(frozen=True, slots=True)
class Operation:
    """One IPC operation (see the module docstring)."""

    name: str
    streaming: bool = False
    event: str | None = None
    #: the accessControl service that guards it (None: no policy needed)
    service: str | None = None
    #: the request field whose value is the authorized resource ("*" if none)
    resource: str | None = None
    #: the Greengrass component that provides it, when the runtime does not
    provider: str | None = None
    namespace: str = GREENGRASS
    # the names on the wire, worked out once (every request and response names them)
    full_name: str = field(init=False, repr=False, compare=False)
    request_shape: str = field(init=False, repr=False, compare=False)
    response_shape: str = field(init=False, repr=False, compare=False)
    event_shape: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = f"{self.namespace}#"
        object.__setattr__(self, "full_name", prefix + self.name)
        object.__setattr__(self, "request_shape", f"{prefix}{self.name}Request")
        object.__setattr__(self, "response_shape", f"{prefix}{self.name}Response")
        object.__setattr__(self, "event_shape", prefix + self.event if self.event else None)


def _op(name: str, **kwargs: object) -> Operation:
    return Operation(name, **kwargs)  # type: ignore[arg-type]


def _stream(name: str, event: str, **kwargs: object) -> Operation:
    return Operation(name, True, event, **kwargs)  # type: ignore[arg-type]


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    # publish/subscribe and IoT Core
    _op("PublishToTopic", service=PUBSUB, resource="topic"),
    _stream("SubscribeToTopic", "SubscriptionResponseMessage", service=PUBSUB, resource="topic"),
    _op("PublishToIoTCore", service=MQTTPROXY, resource="topicName"),
    _stream("SubscribeToIoTCore", "IoTCoreMessage", service=MQTTPROXY, resource="topicName"),
    _stream("SubscribeToIoTCoreConnectionStatus", "IoTCoreConnectionStatusEvent"),
    # configuration and lifecycle
    _op("GetConfiguration"),
    _op("UpdateConfiguration"),
    _stream("SubscribeToConfigurationUpdate", "ConfigurationUpdateEvents"),
    _stream("SubscribeToValidateConfigurationUpdates", "ValidateConfigurationUpdateEvents"),
    _op("SendConfigurationValidityReport"),
    _op("UpdateState"),
    _stream("SubscribeToComponentUpdates", "ComponentUpdatePolicyEvents"),
    _op("DeferComponentUpdate"),
    _op("PauseComponent", service=LIFECYCLE, resource="componentName"),
    _op("ResumeComponent", service=LIFECYCLE, resource="componentName"),
    # the CLI's operations (aws.greengrass.Cli policies)
    _op("GetComponentDetails", service=CLI, resource="componentName"),
    _op("ListComponents", service=CLI),
    _op("RestartComponent", service=CLI, resource="componentName"),
    _op("StopComponent", service=CLI, resource="componentName"),
    _op("CreateLocalDeployment", service=CLI),
    _op("GetLocalDeploymentStatus", service=CLI),
    _op("ListLocalDeployments", service=CLI),
    _op("CancelLocalDeployment", service=CLI),
    _op("CreateDebugPassword", service=CLI, provider=DEBUG_CONSOLE),
    # tokens and metrics
    _op("ValidateAuthorizationToken"),
    _op("PutComponentMetric"),
    # provided by other Greengrass components
    _op("GetSecretValue", provider=SECRET_MANAGER),
    _op("GetThingShadow", provider=SHADOW_MANAGER),
    _op("UpdateThingShadow", provider=SHADOW_MANAGER),
    _op("DeleteThingShadow", provider=SHADOW_MANAGER),
    _op("ListNamedShadowsForThing", provider=SHADOW_MANAGER),
    _op("AuthorizeClientDeviceAction", provider=CLIENT_DEVICE_AUTH),
    _op("GetClientDeviceAuthToken", provider=CLIENT_DEVICE_AUTH),
    _op("VerifyClientDeviceIdentity", provider=CLIENT_DEVICE_AUTH),
    _stream("SubscribeToCertificateUpdates", "CertificateUpdateEvent",
            provider=CLIENT_DEVICE_AUTH),
    # ours
    _op("GetComponentLogs", namespace=OURS),
    _op("Infer", namespace=OURS, service=INFERENCE, resource="componentName"),
)}

BY_FULL_NAME: dict[str, Operation] = {op.full_name: op for op in OPERATIONS.values()}

ERROR_SHAPES = frozenset(
    f"{GREENGRASS}#{name}" for name in (
        "ComponentNotFoundError", "ConflictError", "FailedUpdateConditionCheckError",
        "InvalidArgumentsError", "InvalidArtifactsDirectoryPathError",
        "InvalidClientDeviceAuthTokenError", "InvalidCredentialError",
        "InvalidRecipeDirectoryPathError", "InvalidTokenError", "ResourceNotFoundError",
        "ServiceError", "UnauthorizedError"))


def operation(name: str) -> Operation:
    """The operation called ``name`` (short or full name); one made up for a name the
    model does not know (an operation registered by an embedder: unary, ours)."""
    op = BY_FULL_NAME.get(name) or OPERATIONS.get(name)  # the wire names ops in full
    if op is None:
        namespace, _, short = name.rpartition("#")
        op = Operation(short, namespace=namespace or OURS)
    return op
