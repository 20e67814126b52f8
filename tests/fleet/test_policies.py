"""A fleet deployment's ``deploymentPolicies``: checked key by key as Greengrass's
CreateDeployment checks them, and carried to the device's deployment: the component
update action and timeout (running components told first, or not), the configuration
validation timeout. End to end: mosquitto, SeaweedFS, a runtime and an SDK component."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.fleet import FleetDeployment, FleetError
from actors.fleet._controller import Controller
from actors.fleet._model import AbortCriterion, Rollout, deployment_policies

from .conftest import write
from .fleet import Fleet, devices

POLICIES = "deploymentPolicies"


@pytest.fixture
def fleet(fleet: Fleet, device_credentials: None) -> Fleet:
    """The shared fleet, its devices' runtimes on read-only registry credentials."""
    return fleet


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


CAREFUL = """\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.Careful
ComponentVersion: '1.0.0'
ComponentConfiguration:
  DefaultConfiguration:
    AnswerUpdates: true
    Level: 1
Manifests:
  - Platform: {os: linux}
    Lifecycle:
      Run: '"$EDGE_ACTORS_PYTHON" -u {artifacts:path}/careful.py'
    Artifacts:
      - URI: s3://build/careful.py
"""

# Answers a configuration validation unless the new configuration says Silent; answers
# the component update notices (DeferComponentUpdate, no wait) while AnswerUpdates.
CAREFUL_PY = """\
import json, threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

def report(key, value):
    print("RESULT " + json.dumps({"key": key, "value": value}), flush=True)

ipc = GreengrassCoreIPCClientV2()
answer = ipc.get_configuration(key_path=["AnswerUpdates"]).value["AnswerUpdates"]

def on_validate(event):
    request = event.validate_configuration_update_event
    report("validate", request.deployment_id)
    if not request.configuration.get("Silent"):
        ipc.send_configuration_validity_report(
            configuration_validity_report=ConfigurationValidityReport(
                status="ACCEPTED", deployment_id=request.deployment_id))

def on_update(event):
    if event.pre_update_event is not None:
        deployment = event.pre_update_event.deployment_id
        report("pre-update", deployment)
        if answer:
            ipc.defer_component_update(deployment_id=deployment, message="ready",
                                       recheck_after_ms=0)

ipc.subscribe_to_validate_configuration_updates(on_stream_event=on_validate)
ipc.subscribe_to_component_updates(on_stream_event=on_update)
report("subscribed", answer)
threading.Event().wait(3600)
"""


@pytest.mark.anyio
async def test_the_device_deploys_under_the_documents_update_and_validation_policies(
        fleet: Fleet) -> None:
    pytest.importorskip("awsiot", reason="awsiotsdk is not installed (pip install awsiotsdk)")
    build = fleet.folder / "build"
    async with fleet.registry() as registry:
        await registry.publish(write(build / "careful.yaml", CAREFUL),
                               write(build / "artifacts" / "careful.py", CAREFUL_PY).parent)
    events: list[tuple[str, Any]] = []

    def on_output(name: str, line: str) -> None:
        if name == "test.Careful" and line.startswith("RESULT "):
            event = json.loads(line[7:])
            events.append((event["key"], event["value"]))

    async def subscribed(answer: bool) -> None:
        with anyio.fail_after(60):
            while ("subscribed", answer) not in events:
                await anyio.sleep(0.05)

    def seen(key: str, deployment_id: str) -> bool:
        return (key, deployment_id) in events

    async with devices(fleet, ["dev-a"]) as running:
        device = running["dev-a"]
        device.nucleus.on_output(on_output)
        first = await fleet.deploy("thing/dev-a", {"test.Careful": "1.0.0"})
        assert first.counts() == {"SUCCEEDED": 1}, first.to_json()
        await subscribed(True)

        # SKIP_NOTIFY_COMPONENTS: the running component is not told (it would answer);
        # its new configuration is still validated.
        skipped = await fleet.deploy(
            "thing/dev-a", {"test.Careful": "1.0.0"},
            configuration_update={"test.Careful": {"merge": {"Level": 2,
                                                             "AnswerUpdates": False}}},
            **deployment_policies({"componentUpdatePolicy": {
                "action": "SKIP_NOTIFY_COMPONENTS"}}))
        assert skipped.counts() == {"SUCCEEDED": 1}, skipped.to_json()
        skipped_id = skipped.deployment.deployment_id
        assert seen("validate", skipped_id)
        assert not seen("pre-update", skipped_id)
        await subscribed(False)  # restarted with its new configuration

        # NOTIFY_COMPONENTS: told; it does not answer, so the deployment goes on after
        # componentUpdatePolicy's 1 s (not the default 60 s); then its configuration
        # is not answered either: FAILED after configurationValidationPolicy's 2 s.
        started = time.monotonic()
        silent = await fleet.deploy(
            "thing/dev-a", {"test.Careful": "1.0.0"},
            configuration_update={"test.Careful": {"merge": {"Level": 3, "Silent": True}}},
            wait=40.0, **deployment_policies({
                "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS",
                                          "timeoutInSeconds": 1},
                "configurationValidationPolicy": {"timeoutInSeconds": 2}}))
        elapsed = time.monotonic() - started
        execution = silent.executions["dev-a"]
        assert execution.status == "FAILED", silent.to_json()
        assert execution.detailed == "FAILED_NO_STATE_CHANGE"
        assert "component test.Careful did not report on its new configuration within 2 s" \
            in execution.cause
        assert seen("pre-update", silent.deployment.deployment_id)
        assert elapsed < 25, elapsed
        assert device.nucleus.status["test.Careful"].deployed.configuration["Level"] == 2


@pytest.mark.anyio
async def test_a_device_rejects_a_document_with_bad_policies_and_changes_nothing(
        fleet: Fleet) -> None:
    things = ["dev-a", "dev-b", "dev-c"]
    await fleet.publish({"test.Runtime": "1.0.0"})
    async with fleet.registry() as registry:
        await registry.add_to_group("line", things)
    async with devices(fleet, things) as running, fleet.registry() as registry:
        controller = Controller(registry, fleet.settings(), inline_limit=0)
        deployment = await controller.create(
            "thinggroup/line", {"test.Runtime": "1.0.0"},
            rollout=Rollout(maximum_per_minute=20),  # one every 3 s
            abort=(AbortCriterion("REJECTED", 50, 1),))
        # The document as another writer of the registry left it: a policy Greengrass
        # does not have.
        document = deployment.to_json()
        document[POLICIES]["componentUpdatePolicy"]["action"] = "NOTIFY"
        await registry.put_json(registry.document_key(deployment.deployment_id), document)
        result = await controller.rollout(deployment, things, wait=60.0)
        assert result.counts() == {"REJECTED": 1, "CANCELED": 2}, result.to_json()
        assert result.aborted.startswith("abort criterion met: REJECTED")
        [rejected] = [e for e in result.executions.values() if e.status == "REJECTED"]
        assert rejected.detailed == "REJECTED"
        assert rejected.cause == (
            "the deployment document is not valid: deploymentPolicies.componentUpdatePolicy."
            'action: "NOTIFY": expected NOTIFY_COMPONENTS or SKIP_NOTIFY_COMPONENTS')
        for device in running.values():  # nothing deployed, nothing recorded
            assert device.nucleus.history() == []
            assert dict(device.nucleus.status) == {}
        assert running[rejected.thing].agent.last == {
            "deploymentId": deployment.deployment_id, "groupName": "thinggroup/line",
            "status": "REJECTED"}


@pytest.mark.anyio
async def test_do_nothing_leaves_the_failed_deployment_in_place(fleet: Fleet) -> None:
    stack = {"test.Runtime": "1.0.0", "test.Model": "1.0.0", "test.App": "1.0.0"}
    await fleet.publish(stack)
    await fleet.publish({"test.App": "2.0.0"}, broken=True)  # its install exits 1
    async with devices(fleet, ["dev-a"]) as running:
        device = running["dev-a"]
        first = await fleet.deploy("thing/dev-a", {"test.App": "1.0.0"})
        assert first.counts() == {"SUCCEEDED": 1}, first.to_json()
        broken = await fleet.deploy("thing/dev-a", {"test.App": "2.0.0"},
                                    **deployment_policies({"failureHandlingPolicy":
                                                           "DO_NOTHING"}))
        execution = broken.executions["dev-a"]
        assert execution.status == "FAILED", broken.to_json()
        assert execution.detailed == "FAILED_ROLLBACK_NOT_REQUESTED"
        assert "test.App: install step exited with code 1" in execution.cause
        # Not rolled back: the new version stays, and is the group's deployment now.
        assert device.nucleus.status["test.App"].version == "2.0.0"
        assert device.agent.state["groups"]["thing/dev-a"]["deploymentId"] == \
            broken.deployment.deployment_id


def deploy_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors", "fleet", "deploy",
                           "--registry", "s3://nowhere/fleet", "--broker", "mqtt://127.0.0.1:9",
                           "--target", "thing/dev-a", "--component", "test.App=1.0.0", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_command_line_refuses_bad_policies_before_touching_anything(
        tmp_path: Path) -> None:
    # Nothing listens on the broker nor the registry given: the check comes first.
    refused = deploy_cli("--deployment-policies",
                         '{"componentUpdatePolicy": {"action": "NOTIFY", "timeoutInSeconds": 5}}')
    assert refused.returncode == 1
    assert refused.stderr == (
        'edge-actors: --deployment-policies: deploymentPolicies.componentUpdatePolicy.action: '
        '"NOTIFY": expected NOTIFY_COMPONENTS or SKIP_NOTIFY_COMPONENTS\n')
    refused = deploy_cli("--deployment-policies", "@" + str(write(
        tmp_path / "policies.json", '{"failureHandlingPolicy": "ROLLBACK", "timeout": 5}')))
    assert refused.returncode == 1
    assert "deploymentPolicies: unknown key 'timeout'" in refused.stderr
    refused = deploy_cli("--deployment-policies", f"@{tmp_path / 'missing.json'}")
    assert refused.returncode == 1
    assert f"cannot read {tmp_path / 'missing.json'}: No such file" in refused.stderr
    refused = deploy_cli("--deployment-policies", '{"failureHandlingPolicy": "ROLLBACK"}',
                         "--failure-handling", "DO_NOTHING")
    assert refused.returncode == 1
    assert "--failure-handling DO_NOTHING contradicts --deployment-policies, which says " \
        "ROLLBACK" in refused.stderr


def test_fleet_deploy_writes_the_policies_file_into_the_document(fleet: Fleet,
                                                                 tmp_path: Path) -> None:
    anyio.run(fleet.publish, {"test.Runtime": "1.0.0"})
    policies = write(tmp_path / "policies.json", json.dumps({
        "componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS"},
        "configurationValidationPolicy": {"timeoutInSeconds": 7}}))
    cert, key = fleet.pki.controller()
    server = fleet.registry_server
    # No device runs: the rollout gives up after --wait, the document stays in the registry.
    done = subprocess.run(
        [sys.executable, "-m", "actors", "fleet", "deploy", "--registry", fleet.url,
         "--broker", f"mqtts://127.0.0.1:{fleet.broker.port}", "--ca", str(fleet.pki.ca),
         "--cert", str(cert), "--key", str(key), "--target", "thing/dev-a", "--component",
         "test.Runtime=1.0.0", "--deployment-policies", f"@{policies}",
         "--component-update-timeout", "9", "--wait", "1"],
        env={"PATH": "/usr/bin:/bin", **server.environment(server.admin)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    deployment_id = done.stdout.split()[1]

    async def document() -> Any:
        async with fleet.registry() as registry:
            return await registry.document(deployment_id)

    assert anyio.run(document)[POLICIES] == {
        "failureHandlingPolicy": "ROLLBACK",
        "componentUpdatePolicy": {"action": "SKIP_NOTIFY_COMPONENTS", "timeoutInSeconds": 9},
        "configurationValidationPolicy": {"timeoutInSeconds": 7}}
