"""IPC: the local pub/sub broker (MQTT wildcards), accessControl authorization, the Unix
socket server for component processes, the client SDK and the MQTT bridge.

The client SDK lives in :mod:`actors.ipc.client`.
"""

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
from ._bridge import BridgeStatistics, MqttBridge, MqttSettings
from ._broker import (
    Broker,
    BrokerStatistics,
    Message,
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
from ._server import ENV_SOCKET, ENV_TOKEN, SOCKET_NAME, IpcServer, ServerStatistics
from ._service import CallContext, Deferral, IpcService, StreamResult
from ._spool import Spool
from ._topics import TopicTrie, check_topic_filter, check_topic_name, topic_matches

__all__ = [
    "ENV_SOCKET",
    "ENV_TOKEN",
    "MQTTPROXY",
    "PUBLISH_TO_IOT_CORE",
    "PUBLISH_TO_TOPIC",
    "PUBSUB",
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
    "parse_access_control",
    "topic_matches",
]
