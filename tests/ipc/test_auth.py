"""Authorization from accessControl: the matrix of components, operations and resources."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    compile_resource,
    topic_matches,
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
    "com.example.Wildcards": {"accessControl": {
        PUBSUB: {"com.example.Wildcards:pubsub:1": {
            "operations": [SUBSCRIBE_TO_TOPIC], "resources": ["ml/+", "logs/*", "all/#"]}},
        MQTTPROXY: {"com.example.Wildcards:mqttproxy:1": {
            "operations": ["*"], "resources": ["cmd/+/go", "cmd", "cmd/*"]}},
    }},
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
    # A subscription filter must not match a topic the policies refuse (filter ⊆ policy).
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "ml/+", True),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "ml/x", True),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "ml/#", False),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "ml/+/x", False),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "+/x", False),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "logs/+/+", True),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "logs/#", False),  # also "logs"
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "all/#", True),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "all/+/+/#", True),
    ("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "#", False),
    ("com.example.Wildcards", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, "cmd/+/go", True),
    ("com.example.Wildcards", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, "cmd/#", True),  # cmd + cmd/*
    ("com.example.Wildcards", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, "+/#", False),
    ("com.example.Admin", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, "+/+/#", True),
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


def test_a_refused_filter_names_a_topic_it_would_have_received(authorizer: Authorizer) -> None:
    with pytest.raises(UnauthorizedError) as info:
        authorizer.check("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC, "ml/#")
    assert "ml/#" in str(info.value) and "the filter also matches" in str(info.value)
    topic = authorizer.unauthorized_topic("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC,
                                          "ml/#")
    assert topic is not None and topic_matches("ml/#", topic)
    assert not authorizer.is_authorized("com.example.Wildcards", PUBSUB, SUBSCRIBE_TO_TOPIC,
                                        topic)


# -- filter ⊆ policy, as a property ---------------------------------------------------------

_POLICY_LEVELS = ["a", "b", "", "$s", "+", "#", "*", "a*", "*b", "a${*}", "${iot:thingName}"]
_FILTER_LEVELS = ["a", "b", "", "$s", "t1", "+"]
_TOPIC_LEVELS = ["a", "b", "", "$s", "t1", "ab", "ba", "a*", "x"]

_patterns = st.lists(st.lists(st.sampled_from(_POLICY_LEVELS), min_size=1, max_size=4)
                     .map("/".join), min_size=1, max_size=3)
_filters = st.builds(
    lambda levels, hash_: "/".join(levels + ["#"] * hash_),
    st.lists(st.sampled_from(_FILTER_LEVELS), min_size=0, max_size=4), st.booleans(),
).filter(bool)


def _subscriber(resources: list[str]) -> Authorizer:
    return Authorizer({"c": {"accessControl": {PUBSUB: {"c:1": {
        "operations": [SUBSCRIBE_TO_TOPIC], "resources": resources}}}}}, thing_name="t1")


def _allowed(resources: list[str], topic: str) -> bool:
    return any(compile_resource(r, "t1").fullmatch(topic) for r in resources)


@settings(max_examples=400, deadline=None)
@given(resources=_patterns, topic_filter=_filters, data=st.data())
def test_an_allowed_filter_never_matches_a_refused_topic(
        resources: list[str], topic_filter: str, data: st.DataObject) -> None:
    authorizer = _subscriber(resources)
    allowed = authorizer.is_authorized("c", PUBSUB, SUBSCRIBE_TO_TOPIC, topic_filter)
    witness = authorizer.unauthorized_topic("c", PUBSUB, SUBSCRIBE_TO_TOPIC, topic_filter)
    if not allowed:
        # Refused only with a reason: a topic the filter matches and no policy allows.
        assert witness is not None and topic_matches(topic_filter, witness)
        assert not _allowed(resources, witness)
        return
    assert witness is None
    # Topics the filter matches: each "+" and the "#" filled in at random.
    levels: list[str] = []
    for level in topic_filter.split("/"):
        if level == "+":
            levels.append(data.draw(st.sampled_from(_TOPIC_LEVELS)))
        elif level == "#":
            levels += data.draw(st.lists(st.sampled_from(_TOPIC_LEVELS), max_size=3))
        else:
            levels.append(level)
    if topic_filter.endswith("#") and levels and data.draw(st.booleans()):
        levels = levels[:-1]  # "a/#" matches "a" too
    topic = "/".join(levels)
    if topic and topic_matches(topic_filter, topic):
        assert _allowed(resources, topic), (topic_filter, topic)


def test_a_filter_too_complex_to_check_is_refused_promptly(authorizer: Authorizer) -> None:
    hostile = "/".join(["+"] * 5000)
    with pytest.raises(UnauthorizedError, match="too complex"):
        authorizer.check("com.example.Wildcards", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, hostile)
    # A policy that allows everything needs no search at all.
    assert authorizer.is_authorized("com.example.Admin", MQTTPROXY, SUBSCRIBE_TO_IOT_CORE, hostile)
