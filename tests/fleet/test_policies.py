"""A fleet deployment's ``deploymentPolicies``: checked key by key as Greengrass's
CreateDeployment checks them, and carried to the device's deployment: the component
update action and timeout (running components told first, or not), the configuration
validation timeout. End to end: mosquitto, SeaweedFS, a runtime and an SDK component."""

from __future__ import annotations

from typing import Any

import pytest

from actors.fleet import FleetDeployment, FleetError
from actors.fleet._model import deployment_policies

POLICIES = "deploymentPolicies"


@pytest.mark.parametrize(("policies", "message"), [
    ({"failureHandlingPolicy": "ROLLBACK", "rollbackPolicy": "x"},
     "deploymentPolicies: unknown key 'rollbackPolicy', must be one of: "
     "failureHandlingPolicy, componentUpdatePolicy, configurationValidationPolicy"),
    ({"failureHandlingPolicy": "rollback"},
     'deploymentPolicies.failureHandlingPolicy: "rollback": expected ROLLBACK or DO_NOTHING'),
    ({"componentUpdatePolicy": {"action": "NOTIFY"}},
     'deploymentPolicies.componentUpdatePolicy.action: "NOTIFY": expected '
     "NOTIFY_COMPONENTS or SKIP_NOTIFY_COMPONENTS"),
    ({"componentUpdatePolicy": {"timeout": 60}},
     "deploymentPolicies.componentUpdatePolicy: unknown key 'timeout', must be one of: "
     "action, timeoutInSeconds"),
    ({"componentUpdatePolicy": {"timeoutInSeconds": "60"}},
     'deploymentPolicies.componentUpdatePolicy.timeoutInSeconds: "60": expected a whole '
     "number of seconds (0 or more)"),
    ({"componentUpdatePolicy": {"timeoutInSeconds": True}},
     "componentUpdatePolicy.timeoutInSeconds: true: expected a whole number"),
    ({"configurationValidationPolicy": {"timeoutInSeconds": -1}},
     "deploymentPolicies.configurationValidationPolicy.timeoutInSeconds: -1: expected a "
     "whole number of seconds (0 or more)"),
    ({"configurationValidationPolicy": {"timeoutInSeconds": 2.5}},
     "configurationValidationPolicy.timeoutInSeconds: 2.5: expected a whole number"),
    ({"configurationValidationPolicy": None},
     "deploymentPolicies.configurationValidationPolicy: expected an object with "
     "timeoutInSeconds; got null"),
    (["ROLLBACK"], "deploymentPolicies: expected an object with failureHandlingPolicy"),
])
def test_bad_deployment_policies_are_refused_naming_the_key(policies: Any,
                                                            message: str) -> None:
    with pytest.raises(FleetError) as caught:
        deployment_policies(policies)
    assert message in str(caught.value)
    # A device refuses a document that carries them the same way.
    document = FleetDeployment("thing/dev-a", {"test.App": "1.0.0"}).to_json()
    document[POLICIES] = policies
    with pytest.raises(FleetError) as caught:
        FleetDeployment.from_json(document)
    assert message in str(caught.value)


def test_deployment_policies_take_greengrass_defaults_and_travel_in_the_document() -> None:
    assert deployment_policies({}) == {}
    deployment = FleetDeployment("thing/dev-a", {"test.App": "1.0.0"})
    assert deployment.to_json()[POLICIES] == {
        "failureHandlingPolicy": "ROLLBACK",
        "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": 60},
        "configurationValidationPolicy": {"timeoutInSeconds": 30}}
    given = {"failureHandlingPolicy": "DO_NOTHING",
             "componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS",
                                       "timeoutInSeconds": 5},
             "configurationValidationPolicy": {"timeoutInSeconds": 0}}
    deployment = FleetDeployment("thing/dev-a", {"test.App": "1.0.0"},
                                 **deployment_policies(given))
    assert deployment.to_json()[POLICIES] == given
    read = FleetDeployment.from_json(deployment.to_json())
    assert (read.failure_handling, read.component_update_action,
            read.component_update_timeout, read.configuration_validation_timeout) == (
        "DO_NOTHING", "SKIP_NOTIFY_COMPONENTS", 5, 0)
    with pytest.raises(FleetError, match="configurationValidationPolicy.timeoutInSeconds"):
        FleetDeployment("thing/dev-a", {}, configuration_validation_timeout=-1)
