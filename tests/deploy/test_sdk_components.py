"""Components written with the AWS IoT Device SDK (awsiotsdk), as Greengrass users write
them, deployed by the runtime from recipes: the V2 client (sync and async calls) and
the V1 ``connect()`` client with stream handlers, over the component socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from ..component.test_lifecycle import recipe

pytestmark = pytest.mark.anyio
pytest.importorskip("awsiot", reason="awsiotsdk is not installed (pip install awsiotsdk)")

PRELUDE = """\
import json, sys, time, threading
def report(key, value):
    print("RESULT " + json.dumps({"key": key, "value": value}, default=str), flush=True)
def error_of(call):
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, getattr(exc, "message", None) or str(exc)]
    return None
"""

PUBLISHER = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (BinaryMessage, JsonMessage, Metric,
    PublishMessage, ReceiveMode)

ipc = GreengrassCoreIPCClientV2()
ready = threading.Event()
ipc.subscribe_to_topic(topic="sdk/ready", on_stream_event=lambda event: ready.set())
assert ready.wait(30), "the subscriber never said it was ready"
name = ipc.get_configuration(key_path=["Name"]).value
report("name", name)
ipc.publish_to_topic(topic="sdk/data/json", publish_message=PublishMessage(
    json_message=JsonMessage(message={"from": name["Name"], "value": 21.5})))
ipc.publish_to_topic(topic="sdk/data/binary", publish_message=PublishMessage(
    binary_message=BinaryMessage(message=bytes(range(5)))))
report("refused", error_of(lambda: ipc.publish_to_topic(
    topic="forbidden/topic", publish_message=PublishMessage(
        json_message=JsonMessage(message={})))))
report("secret", error_of(lambda: ipc.get_secret_value(secret_id="db")))
report("shadow", error_of(lambda: ipc.get_thing_shadow(thing_name="t")))
report("validate", error_of(lambda: ipc.validate_authorization_token(token="x")))
ipc.update_configuration(key_path=["Tuning"], value_to_merge={"Threshold": 0.7},
                         timestamp=__import__("datetime").datetime.now())
report("updated", ipc.get_configuration(key_path=["Tuning"]).value)
ipc.put_component_metric(metrics=[Metric(name="Frames", unit="Count", value=3)])
report("bad metric", error_of(lambda: ipc.put_component_metric(
    metrics=[Metric(name="Frames", unit="Parsecs", value=1)])))
components = ipc.list_components().components
report("components", sorted(c.component_name for c in components))
report("restart other", error_of(lambda: ipc.restart_component(component_name="test.V1")))
ipc.update_state(state="RUNNING")
ipc.close()
report("done", True)
"""

SUBSCRIBER = PRELUDE + """\
import asyncio
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage, ReceiveMode

async def main():
    ipc = GreengrassCoreIPCClientV2()
    received = asyncio.Queue()
    loop = asyncio.get_running_loop()
    def on_event(event):
        loop.call_soon_threadsafe(received.put_nowait, event)
    # the V2 client's *_async calls return concurrent futures (and the operation)
    response, _ = ipc.subscribe_to_topic_async(topic="sdk/data/+",
                                               receive_mode=ReceiveMode.RECEIVE_ALL_MESSAGES,
                                               on_stream_event=on_event)
    await asyncio.wrap_future(response)
    config = asyncio.Queue()
    response, _ = ipc.subscribe_to_configuration_update_async(
        key_path=["Mode"], on_stream_event=lambda e: loop.call_soon_threadsafe(
            config.put_nowait, e))
    await asyncio.wrap_future(response)
    got = []
    while len(got) < 2:
        await asyncio.wrap_future(ipc.publish_to_topic_async(
            topic="sdk/ready", publish_message=PublishMessage(
                json_message=JsonMessage(message={}))))
        try:
            event = await asyncio.wait_for(received.get(), 0.3)
        except asyncio.TimeoutError:
            continue
        if event.json_message is not None:
            got.append(["json", event.json_message.context.topic, event.json_message.message])
        else:
            got.append(["binary", event.binary_message.context.topic,
                        list(event.binary_message.message)])
    report("received", sorted(got))
    report("other config", (await asyncio.wrap_future(ipc.get_configuration_async(
        component_name="test.Publisher", key_path=["Name"]))).value)
    await asyncio.wrap_future(ipc.update_configuration_async(
        key_path=[], value_to_merge={"Mode": "fast"},
        timestamp=__import__("datetime").datetime.now()))
    event = await asyncio.wait_for(config.get(), 10)
    report("config event", [event.configuration_update_event.component_name,
                            event.configuration_update_event.key_path])
    ipc.close()

asyncio.run(main())
report("done", True)
"""

V1 = PRELUDE + """\
import awsiot.greengrasscoreipc as greengrasscoreipc
from awsiot.greengrasscoreipc.client import SubscribeToTopicStreamHandler
from awsiot.greengrasscoreipc.model import (JsonMessage, PublishMessage,
    PublishToTopicRequest, SubscribeToTopicRequest, UpdateStateRequest)

ipc = greengrasscoreipc.connect()
events, closed = [], threading.Event()
got = threading.Event()

class Handler(SubscribeToTopicStreamHandler):
    def on_stream_event(self, event):
        events.append(event.json_message.message)
        got.set()
    def on_stream_error(self, error):
        report("stream error", str(error))
        return True
    def on_stream_closed(self):
        closed.set()

def publish(message):
    op = ipc.new_publish_to_topic()
    op.activate(PublishToTopicRequest(topic="sdk/v1", publish_message=PublishMessage(
        json_message=JsonMessage(message=message))))
    op.get_response().result(10)

operation = ipc.new_subscribe_to_topic(Handler())
operation.activate(SubscribeToTopicRequest(topic="sdk/v1")).result(10)
operation.get_response().result(10)
publish("first")
assert got.wait(10)
operation.close().result(10)   # the client cancels the stream
report("closed", closed.wait(10))
publish("after close")
time.sleep(0.3)
report("v1 events", events)
op = ipc.new_update_state()
op.activate(UpdateStateRequest(state="RUNNING"))
op.get_response().result(10)
report("done", True)
"""


def results(lines: list[str], component: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, line in lines:
        if name == component and line.startswith("RESULT "):
            item = json.loads(line[len("RESULT "):])
            out[item["key"]] = item["value"]
    return out


async def test_sdk_components_publish_subscribe_and_configure(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    for name, code in (("publisher", PUBLISHER), ("subscriber", SUBSCRIBER), ("v1", V1)):
        (tmp_path / f"{name}.py").write_text(code)
    recipe(recipes, "test.Publisher", config="""\
        Name: thermometer
        accessControl:
          aws.greengrass.ipc.pubsub:
            test.Publisher:pubsub:1:
              operations: [aws.greengrass#PublishToTopic, aws.greengrass#SubscribeToTopic]
              resources: [sdk/*]
          aws.greengrass.ipc.componentmetric:
            test.Publisher:metric:1:
              operations: [aws.greengrass#PutComponentMetric]
              resources: [Frames]
          aws.greengrass.Cli:
            test.Publisher:cli:1:
              operations: [aws.greengrass#ListComponents]
              resources: ["*"]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "publisher.py"}'  # the runtime's awsiotsdk
    """)
    recipe(recipes, "test.Subscriber", config="""\
        Mode: slow
        accessControl:
          aws.greengrass.ipc.pubsub:
            test.Subscriber:pubsub:1:
              operations: ["*"]
              resources: [sdk/data/+, sdk/ready]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "subscriber.py"}'  # the runtime's awsiotsdk
    """)
    recipe(recipes, "test.V1", config="""\
        accessControl:
          aws.greengrass.ipc.pubsub:
            test.V1:pubsub:1:
              operations: ["*"]
              resources: [sdk/v1]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "v1.py"}'  # the runtime's awsiotsdk
    """)
    lines: list[tuple[str, str]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append((name, line)))
    names = ["test.Publisher", "test.Subscriber", "test.V1"]
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge=dict.fromkeys(names, "1.0.0")))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(names, [State.FINISHED, State.BROKEN], timeout=90)
        states = {name: nucleus.status[name].state for name in names}
        metrics = nucleus.ipc.metrics
    failed = "\n".join(line for _, line in lines)
    assert states == dict.fromkeys(names, State.FINISHED), failed
    pub, sub, v1 = (results(lines, name) for name in names)
    assert pub["name"] == {"Name": "thermometer"}
    assert sub["received"] == [["binary", "sdk/data/binary", [0, 1, 2, 3, 4]],
                               ["json", "sdk/data/json", {"from": "thermometer", "value": 21.5}]]
    kind, message = pub["refused"]
    assert kind == "UnauthorizedError"
    assert "test.Publisher" in message and "PublishToTopic" in message
    assert "forbidden/topic" in message
    assert pub["secret"][0] == "ServiceError"
    assert "aws.greengrass.SecretManager" in pub["secret"][1]
    assert "not deployed" in pub["secret"][1]
    assert "aws.greengrass.ShadowManager" in pub["shadow"][1]
    assert pub["validate"][0] == "UnauthorizedError"
    assert pub["updated"] == {"Threshold": 0.7}
    assert pub["bad metric"][0] == "InvalidArgumentsError"
    assert metrics["test.Publisher"]["Frames"]["value"] == 3
    assert pub["components"] == sorted(names)
    assert pub["restart other"][0] == "UnauthorizedError"
    assert "RestartComponent" in pub["restart other"][1]
    assert sub["other config"] == {"Name": "thermometer"}
    assert sub["config event"] == ["test.Subscriber", ["Mode"]]
    assert v1["closed"] is True
    assert v1["v1 events"] == ["first"]
    for result in (pub, sub, v1):
        assert result.get("done") is True


IOT = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS, PayloadFormat, UserProperty

ipc = GreengrassCoreIPCClientV2()
statuses, commands = [], threading.Event()
received = {}
def on_status(event):
    statuses.append(event.connection_status_event.status)
def on_command(event):
    m = event.message
    received[m.topic_name] = [m.payload.decode(), m.retain,
                              [[p.key, p.value] for p in m.user_properties or []],
                              m.content_type, m.payload_format]
    if m.topic_name == "cmd/edge/led":
        commands.set()
ipc.subscribe_to_iot_core_connection_status(on_stream_event=on_status)
ipc.subscribe_to_iot_core(topic_name="cmd/edge/#", qos=QOS.AT_LEAST_ONCE,
                          on_stream_event=on_command)
ipc.publish_to_iot_core(topic_name="things/edge/telemetry", qos=QOS.AT_LEAST_ONCE,
                        payload=b"21.5")
ipc.publish_to_iot_core(topic_name="things/edge/state", qos=QOS.AT_LEAST_ONCE,
                        payload=b'{"led": "off"}', retain=True,
                        user_properties=[UserProperty(key="schema", value="v2")],
                        message_expiry_interval_seconds=3600,
                        correlation_data=b"corr-1", response_topic="things/edge/replies",
                        payload_format=PayloadFormat.UTF8, content_type="application/json")
ipc.publish_to_iot_core(topic_name="things/edge/mode", qos=QOS.AT_MOST_ONCE,
                        payload=b"eco", retain=True)
assert commands.wait(30), "no command from the cloud"
report("command", ["cmd/edge/led"] + received["cmd/edge/led"])
report("retained config", received.get("cmd/edge/config"))
report("refused", error_of(lambda: ipc.publish_to_iot_core(
    topic_name="other/thing", qos=QOS.AT_MOST_ONCE, payload=b"x")))
print("WAITING FOR DISCONNECT", flush=True)
deadline = time.time() + 30
while "DISCONNECTED" not in statuses and time.time() < deadline:
    time.sleep(0.05)
report("statuses", statuses)
report("done", True)
"""


async def test_an_sdk_component_talks_to_iot_core_through_the_bridge(tmp_path: Path) -> None:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from actors.ipc import MqttSettings

    from ..ipc import mosquitto

    if not mosquitto.available():
        pytest.skip(mosquitto.INSTALL_HINT)
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    broker = mosquitto.Mosquitto(folder)
    broker.start()
    try:
        recipes = tmp_path / "recipes"
        (tmp_path / "iot.py").write_text(IOT)
        recipe(recipes, "test.Iot", config="""\
            accessControl:
              aws.greengrass.ipc.mqttproxy:
                test.Iot:mqttproxy:1:
                  operations: [aws.greengrass#PublishToIoTCore, aws.greengrass#SubscribeToIoTCore]
                  resources: [things/edge/#, cmd/edge/#]
        """, lifecycle=f"""\
            Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "iot.py"}'
        """)
        lines: list[tuple[str, str]] = []
        waiting = anyio.Event()

        def output(name: str, line: str) -> None:
            lines.append((name, line))
            if line.startswith("WAITING FOR DISCONNECT"):
                waiting.set()
        settings = MqttSettings("127.0.0.1", broker.port, reconnect_min=5, reconnect_max=5)
        v5 = aiomqtt.ProtocolVersion.V5
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="cloud",
                                  protocol=v5) as cloud:
            await cloud.subscribe("things/#", qos=1)
            # Retained before the component subscribes: its stream gets it, flagged.
            config = Properties(PacketTypes.PUBLISH)
            config.UserProperty = [("rev", "7")]
            config.ContentType = "text/plain"
            await cloud.publish("cmd/edge/config", b"fast", qos=1, retain=True,
                                properties=config)
            nucleus = Nucleus(tmp_path / "root", thing_name="edge", mqtt=settings)
            nucleus.on_output(output)
            async with nucleus:
                record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                                merge={"test.Iot": "1.0.0"}))
                assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
                with anyio.fail_after(30):
                    telemetry = await anext(aiter(cloud.messages))
                    await cloud.publish("cmd/edge/led", b"on", qos=1)
                    await waiting.wait()
                    live = {}
                    async for message in cloud.messages:  # until the broker has both
                        live[str(message.topic)] = message.retain
                        if {"things/edge/state", "things/edge/mode"} <= live.keys():
                            break
                # A cloud client subscribing only now gets the component's retained ones.
                async with aiomqtt.Client("127.0.0.1", broker.port, identifier="late",
                                          protocol=v5) as late:
                    await late.subscribe("things/edge/+", qos=1)
                    retained = {}
                    with anyio.fail_after(10):
                        async for message in late.messages:
                            retained[str(message.topic)] = message
                            if len(retained) == 2:
                                break
                broker.kill()
                await nucleus.wait_states(["test.Iot"], [State.FINISHED, State.BROKEN],
                                          timeout=60)
                state = nucleus.status["test.Iot"].state
    finally:
        broker.kill()
    assert state is State.FINISHED, "\n".join(line for _, line in lines)
    assert str(telemetry.topic) == "things/edge/telemetry" and telemetry.payload == b"21.5"
    result = results(lines, "test.Iot")
    assert result["command"] == ["cmd/edge/led", "on", False, [], None, "0"]
    assert result["retained config"] == ["fast", True, [["rev", "7"]], "text/plain", "0"]
    assert live == {"things/edge/state": False, "things/edge/mode": False}
    state, mode = retained["things/edge/state"], retained["things/edge/mode"]
    assert (state.payload, state.retain, mode.payload, mode.retain) == (
        b'{"led": "off"}', True, b"eco", True)
    fields = state.properties
    assert fields is not None
    assert fields.UserProperty == [("schema", "v2")]
    assert 3500 <= fields.MessageExpiryInterval <= 3600
    assert (fields.CorrelationData, fields.ResponseTopic, fields.PayloadFormatIndicator,
            fields.ContentType) == (b"corr-1", "things/edge/replies", 1, "application/json")
    assert result["refused"][0] == "UnauthorizedError" and "other/thing" in result["refused"][1]
    assert result["statuses"][-1] == "DISCONNECTED"


CONTROL = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

ipc = GreengrassCoreIPCClientV2()
details = ipc.get_component_details(component_name="test.Control").component_details
report("details", [details.component_name, details.version, details.state])
report("missing", error_of(lambda: ipc.get_component_details(component_name="no.Such")))
created = ipc.create_local_deployment(recipe_directory_path=sys.argv[1],
                                      root_component_versions_to_add={"test.Other": "1.0.0"})
deadline = time.time() + 60
while time.time() < deadline:
    status = ipc.get_local_deployment_status(deployment_id=created.deployment_id).deployment
    if status.status not in ("QUEUED", "IN_PROGRESS"):
        break
    time.sleep(0.2)
report("deployment", [status.deployment_id == created.deployment_id, status.status])
listed = ipc.list_local_deployments().local_deployments
report("listed", created.deployment_id in [d.deployment_id for d in listed])
report("restart", ipc.restart_component(component_name="test.Other").restart_status)
report("pause", error_of(lambda: ipc.pause_component(component_name="test.Other")))
time.sleep(0.5)
with open(sys.argv[2]) as ticks:
    before = ticks.read()
time.sleep(0.5)
with open(sys.argv[2]) as ticks:
    report("frozen", ticks.read() == before)
report("resume", error_of(lambda: ipc.resume_component(component_name="test.Other")))
time.sleep(0.5)
with open(sys.argv[2]) as ticks:
    report("thawed", ticks.read() != before)
report("stop", ipc.stop_component(component_name="test.Other").stop_status)
report("pause_stopped", error_of(lambda: ipc.pause_component(component_name="test.Other")))
ipc.defer_component_update(deployment_id=created.deployment_id, message="busy",
                           recheck_after_ms=1000)
report("done", True)
"""


async def test_an_sdk_component_controls_components_with_a_cli_policy(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (tmp_path / "control.py").write_text(CONTROL)
    ticks = tmp_path / "ticks"
    recipe(recipes, "test.Control", config="""\
        accessControl:
          aws.greengrass.Cli:
            test.Control:cli:1:
              operations: ["*"]
              resources: ["*"]
          aws.greengrass.ipc.lifecycle:
            test.Control:lifecycle:1:
              operations: ["aws.greengrass#PauseComponent", "aws.greengrass#ResumeComponent"]
              resources: ["test.Other"]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "control.py"} {recipes} {ticks}'
    """)
    recipe(recipes, "test.Other", lifecycle=f"""\
        Run: 'while true; do date +%s%N > {ticks}; sleep 0.05; done'
    """)
    lines: list[tuple[str, str]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append((name, line)))
    deferrals: list[Any] = []
    nucleus.ipc.on_deferral(deferrals.append)  # what the deployment queue also receives
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Control": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.Control"], [State.FINISHED, State.BROKEN], timeout=90)
        state = nucleus.status["test.Control"].state
    assert state is State.FINISHED, "\n".join(line for _, line in lines)
    result = results(lines, "test.Control")
    assert result["details"] == ["test.Control", "1.0.0", "RUNNING"]
    assert result["missing"][0] == "ResourceNotFoundError"
    assert result["deployment"] == [True, "SUCCEEDED"]
    assert result["listed"] is True
    assert result["restart"] == "SUCCEEDED" and result["stop"] == "SUCCEEDED"
    # PauseComponent / ResumeComponent freeze and thaw the component's processes.
    assert result["pause"] is None and result["frozen"] is True
    assert result["resume"] is None and result["thawed"] is True
    assert result["pause_stopped"][0] == "ServiceError"
    assert "not RUNNING" in result["pause_stopped"][1]
    assert deferrals and deferrals[0].component == "test.Control"
    assert result["done"] is True


POLICIES = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

ipc = GreengrassCoreIPCClientV2()
deferred = set()

def on_validate(event):
    request = event.validate_configuration_update_event
    ok = request.configuration.get("threshold", 0) <= 1
    report("validated", [request.deployment_id, ok])
    ipc.send_configuration_validity_report(
        configuration_validity_report=ConfigurationValidityReport(
            status="ACCEPTED" if ok else "REJECTED", deployment_id=request.deployment_id,
            message="" if ok else "threshold must be at most 1"))

def on_update(event):
    if event.pre_update_event is not None:
        deployment = event.pre_update_event.deployment_id
        # The first notice of a deployment is deferred; the next one is accepted.
        wait = 0 if deployment in deferred else 700
        deferred.add(deployment)
        report("pre-update", [deployment, wait])
        ipc.defer_component_update(deployment_id=deployment, message="busy",
                                   recheck_after_ms=wait)
    else:
        report("post-update", event.post_update_event.deployment_id)

ipc.subscribe_to_validate_configuration_updates(on_stream_event=on_validate)
ipc.subscribe_to_component_updates(on_stream_event=on_update)
report("subscribed", True)
threading.Event().wait(120)
"""


async def test_deployments_ask_running_components_to_defer_and_validate(
        tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (tmp_path / "policies.py").write_text(POLICIES)
    recipe(recipes, "test.Careful", config="threshold: 0.5\n", lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "policies.py"}'
    """)
    lines: list[tuple[str, str]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append((name, line)))

    def events(key: str) -> list[Any]:
        return [json.loads(line[7:])["value"] for name, line in lines
                if name == "test.Careful" and line.startswith("RESULT ")
                and json.loads(line[7:])["key"] == key]

    async with nucleus:
        first = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                       merge={"test.Careful": "1.0.0"}))
        assert first.detailed_status is DetailedStatus.SUCCESSFUL, first.cause
        with anyio.fail_after(30):
            while not events("subscribed"):
                await anyio.sleep(0.05)
        # A configuration the component refuses: nothing changes, its message is the cause.
        rejected = await nucleus.deploy(DeploymentRequest(configuration_update={
            "test.Careful": {"merge": {"threshold": 2}}}))
        assert rejected.detailed_status is DetailedStatus.FAILED_NO_STATE_CHANGE
        assert "test.Careful rejected its new configuration: threshold must be at most 1" \
            in rejected.cause
        assert nucleus.status["test.Careful"].deployed.configuration["threshold"] == 0.5
        # One it accepts: notified, deferred once (700 ms), notified again, then applied
        # (a process component takes a new configuration by a restart).
        accepted = await nucleus.deploy(DeploymentRequest(configuration_update={
            "test.Careful": {"merge": {"threshold": 0.8}}}))
        assert accepted.detailed_status is DetailedStatus.SUCCESSFUL, accepted.cause
        assert nucleus.status["test.Careful"].deployed.configuration["threshold"] == 0.8
    assert [e for e in events("pre-update") if e[0] == accepted.deployment_id] == [
        [accepted.deployment_id, 700], [accepted.deployment_id, 0]]
    assert [rejected.deployment_id, False] in events("validated")
    assert [accepted.deployment_id, True] in events("validated")
