"""The operations of issue 17 the other SDK tests do not reach, called through the
AWS IoT Device SDK from component processes: those another Greengrass component
provides (answered as the nucleus answers while it is not deployed, naming it),
ValidateAuthorizationToken as the stream manager calls it, a subscription with
RECEIVE_MESSAGES_FROM_OTHERS, and a deployment's component update policy
(SKIP_NOTIFY_COMPONENTS, and the timeout when a component never answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.component import State
from actors.deploy import ComponentUpdatePolicy, DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from ..component.test_lifecycle import recipe
from .test_sdk_components import PRELUDE, results

pytestmark = pytest.mark.anyio
pytest.importorskip("awsiot", reason="awsiotsdk is not installed (pip install awsiotsdk)")

PROVIDED = {
    "GetSecretValue": "aws.greengrass.SecretManager",
    "GetThingShadow": "aws.greengrass.ShadowManager",
    "UpdateThingShadow": "aws.greengrass.ShadowManager",
    "DeleteThingShadow": "aws.greengrass.ShadowManager",
    "ListNamedShadowsForThing": "aws.greengrass.ShadowManager",
    "AuthorizeClientDeviceAction": "aws.greengrass.clientdevices.Auth",
    "GetClientDeviceAuthToken": "aws.greengrass.clientdevices.Auth",
    "VerifyClientDeviceIdentity": "aws.greengrass.clientdevices.Auth",
    "SubscribeToCertificateUpdates": "aws.greengrass.clientdevices.Auth",
    "CreateDebugPassword": "aws.greengrass.LocalDebugConsole",
}

STREAM_MANAGER = PRELUDE + """\
import os
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (CertificateOptions, CertificateType,
    ClientDeviceCredential, CredentialDocument, JsonMessage, MQTTCredential, PublishMessage,
    ReceiveMode)

ipc = GreengrassCoreIPCClientV2()
calls = {
    "GetSecretValue": lambda: ipc.get_secret_value(secret_id="db"),
    "GetThingShadow": lambda: ipc.get_thing_shadow(thing_name="edge"),
    "UpdateThingShadow": lambda: ipc.update_thing_shadow(thing_name="edge", payload=b"{}"),
    "DeleteThingShadow": lambda: ipc.delete_thing_shadow(thing_name="edge"),
    "ListNamedShadowsForThing": lambda: ipc.list_named_shadows_for_thing(thing_name="edge"),
    "AuthorizeClientDeviceAction": lambda: ipc.authorize_client_device_action(
        client_device_auth_token="t", operation="mqtt:connect", resource="mqtt:clientId:c"),
    "GetClientDeviceAuthToken": lambda: ipc.get_client_device_auth_token(
        credential=CredentialDocument(mqtt_credential=MQTTCredential(
            client_id="c", certificate_pem="pem"))),
    "VerifyClientDeviceIdentity": lambda: ipc.verify_client_device_identity(
        credential=ClientDeviceCredential(client_device_certificate="pem")),
    "SubscribeToCertificateUpdates": lambda: ipc.subscribe_to_certificate_updates(
        certificate_options=CertificateOptions(certificate_type=CertificateType.SERVER),
        on_stream_event=print),
    "CreateDebugPassword": lambda: ipc.create_debug_password(),
}
report("provided", {name: error_of(call) for name, call in calls.items()})

# The stream manager checks the tokens of the components that talk to it.
with open(sys.argv[1]) as token:
    report("valid", ipc.validate_authorization_token(token=token.read().strip()).is_valid)
report("invalid", error_of(lambda: ipc.validate_authorization_token(token="forged")))

# RECEIVE_MESSAGES_FROM_OTHERS: not its own messages, the others'.
everything, others = [], []
got_own = threading.Event()
got_other = threading.Event()
def on_all(event):
    everything.append(event.json_message.message)
    got_own.set()
def on_others(event):
    others.append(event.json_message.message)
    got_other.set()
ipc.subscribe_to_topic(topic="modes/t", receive_mode=ReceiveMode.RECEIVE_ALL_MESSAGES,
                       on_stream_event=on_all)
ipc.subscribe_to_topic(topic="modes/t", receive_mode=ReceiveMode.RECEIVE_MESSAGES_FROM_OTHERS,
                       on_stream_event=on_others)
ipc.publish_to_topic(topic="modes/t", publish_message=PublishMessage(
    json_message=JsonMessage(message="own")))
assert got_own.wait(10), "its own message never came back"
print("WAITING FOR OTHERS", flush=True)
assert got_other.wait(30), "no message from another"
report("all", everything)
report("others", others)
report("done", True)
"""

HOLDER = PRELUDE + """\
import os
with open(sys.argv[1], "w") as token:
    token.write(os.environ["SVCUID"])
threading.Event().wait()
"""


async def test_operations_of_components_not_deployed_tokens_and_receive_modes(
        tmp_path: Path) -> None:
    recipes, token = tmp_path / "recipes", tmp_path / "token"
    (tmp_path / "stream_manager.py").write_text(STREAM_MANAGER)
    (tmp_path / "holder.py").write_text(HOLDER)
    # A stand-in named as the stream manager (the only one the nucleus lets validate).
    recipe(recipes, "aws.greengrass.StreamManager", config="""\
        accessControl:
          aws.greengrass.ipc.pubsub:
            aws.greengrass.StreamManager:pubsub:1:
              operations: ["*"]
              resources: [modes/t]
    """, deps="""\
        test.Holder:
          VersionRequirement: ">=1.0.0"
          DependencyType: HARD
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "stream_manager.py"} {token}'
    """)
    recipe(recipes, "test.Holder", lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "holder.py"} {token}'
    """)
    lines: list[tuple[str, str]] = []
    waiting = anyio.Event()

    def output(name: str, line: str) -> None:
        lines.append((name, line))
        if line.startswith("WAITING FOR OTHERS"):
            waiting.set()
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(output)
    async with nucleus:
        # The holder runs (and wrote its token) before its HARD dependent starts.
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"aws.greengrass.StreamManager": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        with anyio.fail_after(60):
            while not token.exists() or not token.read_text():
                await anyio.sleep(0.05)
            await waiting.wait()
        await nucleus.publish("modes/t", "from the runtime")
        await nucleus.wait_states(["aws.greengrass.StreamManager"],
                                  [State.FINISHED, State.BROKEN], timeout=60)
        state = nucleus.status["aws.greengrass.StreamManager"].state
    assert state is State.FINISHED, "\n".join(line for _, line in lines)
    result = results(lines, "aws.greengrass.StreamManager")
    assert result["provided"].keys() == PROVIDED.keys()
    for operation, provider in PROVIDED.items():
        kind, message = result["provided"][operation]
        assert kind == "ServiceError", (operation, kind, message)
        # The nucleus's words, then which component would provide it.
        assert message.startswith(f"Operation aws.greengrass#{operation} is not supported "
                                  "by Greengrass"), message
        assert f"component {provider}, which provides it, is not deployed" in message
    assert result["valid"] is True
    assert result["invalid"][0] == "InvalidTokenError"
    assert result["all"][0] == "own"  # its own message reaches RECEIVE_ALL_MESSAGES
    assert result["others"] == ["from the runtime"]
    assert result["done"] is True


LISTENER = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

ipc = GreengrassCoreIPCClientV2()

def on_update(event):
    # Told, and never answers: the deployment waits its timeout, then goes on.
    which = "pre" if event.pre_update_event is not None else "post"
    deployment = (event.pre_update_event or event.post_update_event).deployment_id
    report("update", [which, deployment])

ipc.subscribe_to_component_updates(on_stream_event=on_update)
report("subscribed", True)
threading.Event().wait()
"""


async def test_component_update_policy_skip_and_timeout(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (tmp_path / "listener.py").write_text(LISTENER)
    recipe(recipes, "test.Listener", lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "listener.py"}'
    """)
    recipe(recipes, "test.Next", lifecycle="Run: sleep 60\n")
    lines: list[tuple[str, str]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append((name, line)))

    def updates() -> list[Any]:
        return results_all(lines, "test.Listener", "update")

    async with nucleus:
        first = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                       merge={"test.Listener": "1.0.0"}))
        assert first.detailed_status is DetailedStatus.SUCCESSFUL, first.cause
        with anyio.fail_after(30):
            while not results(lines, "test.Listener").get("subscribed"):
                await anyio.sleep(0.05)
        skipped = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Next": "1.0.0"},
            component_update_policy=ComponentUpdatePolicy.SKIP_NOTIFY_COMPONENTS))
        started = anyio.current_time()
        notified = await nucleus.deploy(DeploymentRequest(
            remove=["test.Next"], component_update_timeout=1.5))
        waited = anyio.current_time() - started
        with anyio.fail_after(10):
            while ["post", notified.deployment_id] not in updates():
                await anyio.sleep(0.05)
    assert skipped.detailed_status is DetailedStatus.SUCCESSFUL, skipped.cause
    assert notified.detailed_status is DetailedStatus.SUCCESSFUL, notified.cause
    told = updates()
    # SKIP_NOTIFY_COMPONENTS: not told before, nor after.
    assert not [u for u in told if u[1] == skipped.deployment_id], told
    # NOTIFY_COMPONENTS: told before and after; no answer, so the timeout was waited.
    assert ["pre", notified.deployment_id] in told and ["post", notified.deployment_id] in told
    assert 1.5 <= waited < 30


def results_all(lines: list[tuple[str, str]], component: str, key: str) -> list[Any]:
    """Every value ``component`` reported under ``key``, in order."""
    return [json.loads(line[7:])["value"] for name, line in lines
            if name == component and line.startswith("RESULT ")
            and json.loads(line[7:])["key"] == key]
