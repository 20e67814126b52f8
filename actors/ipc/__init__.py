"""IPC: the local pub/sub broker (MQTT wildcards), accessControl authorization, the Unix
socket server for component processes, the client SDK and the MQTT bridge.

The client SDK lives in :mod:`actors.ipc.client`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ..layout import SOCKET_NAME
from ._actor import BrokerActor, GetStatistics, IpcStatistics, Publish
from ._auth import (
    MQTTPROXY,
    PUBLISH_TO_IOT_CORE,
    PUBLISH_TO_TOPIC,
    PUBSUB,
    SUBSCRIBE_TO_IOT_CORE,
    SUBSCRIBE_TO_TOPIC,
    Authorizer,
    Policy,
    compile_resource,
    parse_access_control,
)
from ._broker import (
    Broker,
    BrokerStatistics,
    Overflow,
    ReceiveMode,
    Subscription,
    SubscriptionStatistics,
)
from ._config import ConfigurationProvider, InMemoryConfiguration
from ._errors import (
    AccessControlError,
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    IpcError,
    ProtocolError,
    ResourceNotFoundError,
    ServiceError,
    SpoolFull,
    StreamClosed,
    SubscriberFull,
    UnauthorizedError,
)
from ._identity import CLI_IDENTITY, RESERVED_NAMES, only_cli, write_cli_token
from ._message import Message
from ._server import ENV_SOCKET, ENV_TOKEN, IpcServer, Limits, ServerStatistics
from ._service import CallContext, Deferral, IpcService, StreamResult
from ._topics import TopicTrie, check_topic_filter, check_topic_name, topic_matches

if TYPE_CHECKING:
    from ._bridge import BridgeStatistics, MqttBridge, MqttSettings
    from ._spool import Spool

# The MQTT bridge and its spool load on first use: a runtime without MQTT
# configured never pays for them (a fifth of the runtime's start-up).
_LAZY = {"BridgeStatistics": "._bridge", "MqttBridge": "._bridge", "MqttSettings": "._bridge",
         "Spool": "._spool"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CLI_IDENTITY",
    "ENV_SOCKET",
    "ENV_TOKEN",
    "MQTTPROXY",
    "PUBLISH_TO_IOT_CORE",
    "PUBLISH_TO_TOPIC",
    "PUBSUB",
    "RESERVED_NAMES",
    "SOCKET_NAME",
    "SUBSCRIBE_TO_IOT_CORE",
    "SUBSCRIBE_TO_TOPIC",
    "AccessControlError",
    "Authorizer",
    "BridgeStatistics",
    "Broker",
    "BrokerActor",
    "BrokerStatistics",
    "CallContext",
    "ConfigurationProvider",
    "Deferral",
    "FailedUpdateConditionCheckError",
    "GetStatistics",
    "InMemoryConfiguration",
    "InvalidArgumentsError",
    "IpcError",
    "IpcServer",
    "IpcService",
    "IpcStatistics",
    "Limits",
    "Message",
    "MqttBridge",
    "MqttSettings",
    "Overflow",
    "Policy",
    "ProtocolError",
    "Publish",
    "ReceiveMode",
    "ResourceNotFoundError",
    "ServerStatistics",
    "ServiceError",
    "Spool",
    "SpoolFull",
    "StreamClosed",
    "StreamResult",
    "SubscriberFull",
    "Subscription",
    "SubscriptionStatistics",
    "TopicTrie",
    "UnauthorizedError",
    "check_topic_filter",
    "check_topic_name",
    "compile_resource",
    "only_cli",
    "parse_access_control",
    "topic_matches",
    "write_cli_token",
]
