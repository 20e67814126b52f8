"""Authorization from accessControl: the matrix of components, operations and resources."""

from __future__ import annotations

import pytest

from actors.ipc import (
    MQTTPROXY,
    PUBLISH_TO_IOT_CORE,
    PUBLISH_TO_TOPIC,
    PUBSUB,
    SUBSCRIBE_TO_IOT_CORE,
    SUBSCRIBE_TO_TOPIC,
    AccessControlError,
    Authorizer,
    UnauthorizedError,
)

ACCESS = {
    # A recipe's ComponentConfiguration.DefaultConfiguration, as Greengrass writes it.
    "com.example.Inference": {"accessControl": {
        PUBSUB: {
            "com.example.Inference:pubsub:1": {
                "policyDescription": "Publish results, listen to commands.",
                "operations": [PUBLISH_TO_TOPIC],
                "resources": ["ml/dlr/image-classification", "ml/+/status"],
            },
            "com.example.Inference:pubsub:2": {
                "operations": [SUBSCRIBE_TO_TOPIC],
                "resources": ["commands/#"],
            },
        },
        MQTTPROXY: {
            "com.example.Inference:mqttproxy:1": {
                "operations": [PUBLISH_TO_IOT_CORE],
                "resources": ["things/${iot:thingName}/results", "ml/*"],
            },
        },
    }},
    "com.example.Admin": {"accessControl": {
        PUBSUB: {"com.example.Admin:pubsub:1": {"operations": ["*"], "resources": ["*"]}},
        MQTTPROXY: {"com.example.Admin:mqttproxy:1": {"operations": ["*"],
                                                      "resources": ["#"]}},
    }},
    "com.example.Literal": {"accessControl": {
        PUBSUB: {"com.example.Literal:pubsub:1": {
            "operations": [PUBLISH_TO_TOPIC], "resources": ["weird/${*}/topic", "a+b/c#"]}},
    }},
    "com.example.Nothing": {"someKey": 1},
}

MATRIX = [
    ("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC, "ml/dlr/image-classification", True),
    ("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC, "ml/dlr/status", True),
    ("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC, "ml/dlr/x/status", False),
    ("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC, "ml/other", False),
    ("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "ml/dlr/image-classification", False),
    ("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "commands", True),
    ("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "commands/restart", True),
    ("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "commands/#", True),
    ("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "commandsX", False),
    ("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "#", False),
    ("com.example.Inference", MQTTPROXY, PUBLISH_TO_IOT_CORE, "things/cam-1/results", True),
    ("com.example.Inference", MQTTPROXY, PUBLISH_TO_IOT_CORE, "things/cam-2/results", False),
    ("com.example.Inference", MQTTPROXY, PUBLISH_TO_IOT_CORE, "ml/a/b/c", True),
    ("com.example.Inference", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, "ml/a", False),
    ("com.example.Inference", PUBSUB, PUBLISH_TO_IOT_CORE, "ml/a", False),
    ("com.example.Admin", PUBSUB, PUBLISH_TO_TOPIC, "anything/at/all", True),
    ("com.example.Admin", PUBSUB, SUBSCRIBE_TO_TOPIC, "#", True),
    ("com.example.Admin", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, "$aws/things/x/shadow", True),
    ("com.example.Literal", PUBSUB, PUBLISH_TO_TOPIC, "weird/*/topic", True),
    ("com.example.Literal", PUBSUB, PUBLISH_TO_TOPIC, "weird/x/topic", False),
    ("com.example.Literal", PUBSUB, PUBLISH_TO_TOPIC, "a+b/c#", True),
    ("com.example.Literal", PUBSUB, PUBLISH_TO_TOPIC, "aXb/c", False),
    ("com.example.Nothing", PUBSUB, PUBLISH_TO_TOPIC, "ml/x", False),
    ("com.example.Unknown", PUBSUB, PUBLISH_TO_TOPIC, "ml/x", False),
]


@pytest.fixture
def authorizer() -> Authorizer:
    return Authorizer(ACCESS, thing_name="cam-1")


@pytest.mark.parametrize(("component", "service", "operation", "resource", "allowed"), MATRIX)
def test_authorization_matrix(authorizer: Authorizer, component: str, service: str,
                              operation: str, resource: str, allowed: bool) -> None:
    assert authorizer.is_authorized(component, service, operation, resource) is allowed
    # Twice: the second answer comes from the cache and must agree.
    assert authorizer.is_authorized(component, service, operation, resource) is allowed


def test_refusal_names_component_operation_and_resource(authorizer: Authorizer) -> None:
    with pytest.raises(UnauthorizedError) as info:
        authorizer.check("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC, "secret/topic")
    text = str(info.value)
    assert "com.example.Inference" in text and PUBLISH_TO_TOPIC in text
    assert "secret/topic" in text
    assert isinstance(info.value, PermissionError)


def test_policy_ids_must_be_unique_across_components(authorizer: Authorizer) -> None:
    stolen = {"accessControl": {PUBSUB: {"com.example.Admin:pubsub:1": {
        "operations": ["*"], "resources": ["*"]}}}}
    with pytest.raises(AccessControlError, match="com.example.Admin"):
        authorizer.set_policies("com.example.Intruder", stolen)
    assert not authorizer.is_authorized("com.example.Intruder", PUBSUB, PUBLISH_TO_TOPIC, "x")


def test_a_configuration_update_replaces_the_policies(authorizer: Authorizer) -> None:
    assert authorizer.is_authorized("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC,
                                    "ml/dlr/image-classification")
    authorizer.set_policies("com.example.Inference", {"accessControl": {PUBSUB: {
        "com.example.Inference:pubsub:9": {"operations": [PUBLISH_TO_TOPIC],
                                           "resources": ["ml/new"]}}}})
    assert not authorizer.is_authorized("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC,
                                        "ml/dlr/image-classification")
    assert authorizer.is_authorized("com.example.Inference", PUBSUB, PUBLISH_TO_TOPIC, "ml/new")
    # JSON text (as a configuration merge may carry it) works too; None removes.
    authorizer.set_policies("com.example.Inference",
                            '{"aws.greengrass.ipc.pubsub": {"p": {"operations": ["*"]}}}')
    assert authorizer.is_authorized("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "z")
    authorizer.set_policies("com.example.Inference", None)
    assert not authorizer.is_authorized("com.example.Inference", PUBSUB, SUBSCRIBE_TO_TOPIC, "z")


@pytest.mark.parametrize("bad", [
    {"accessControl": {PUBSUB: {"p": {"operations": [], "resources": ["*"]}}}},
    {"accessControl": {PUBSUB: {"p": {"operations": ["*"], "resources": "*"}}}},
    {"accessControl": {PUBSUB: ["not", "a", "mapping"]}},
    {"accessControl": "{not json"},
])
def test_malformed_policies_are_refused_with_the_place(authorizer: Authorizer,
                                                       bad: dict[str, object]) -> None:
    with pytest.raises(AccessControlError, match="com.example.Bad"):
        authorizer.set_policies("com.example.Bad", bad)
