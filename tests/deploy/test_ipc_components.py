"""Component processes talk to the runtime over the IPC socket with the token it
hands them (SVCUID), within their accessControl; the runtime reports states."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from ..component.test_lifecycle import recipe

pytestmark = pytest.mark.anyio

SCRIPT = """\
from actors.ipc.client import connect_sync
with connect_sync() as ipc:
    name = ipc.get_configuration(["Name"])["Name"]  # Greengrass answers {key: value}
    ipc.publish_to_topic("sensors/temperature", {"from": name, "value": 21.5})
    try:
        ipc.publish_to_topic("forbidden/topic", {"x": 1})
    except Exception as exc:
        print("refused:", exc)
"""


async def test_a_component_process_publishes_through_the_socket(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (tmp_path / "publisher.py").write_text(SCRIPT)
    recipe(recipes, "test.Publisher", config="""\
        Name: thermometer
        accessControl:
          aws.greengrass.ipc.pubsub:
            test.Publisher:pubsub:1:
              operations: [aws.greengrass#PublishToTopic]
              resources: [sensors/+]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "publisher.py"}'  # awsiotsdk is the runtime's
    """)
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        readings = nucleus.ipc.broker.subscribe("test.Listener", "sensors/#")
        states = nucleus.ipc.broker.subscribe("test.Listener",
                                              "$nucleus/components/test.Publisher/state")
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Publisher": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.Publisher"], [State.FINISHED], timeout=60)
        with anyio.fail_after(10):
            reading = await readings.receive()
        reported = [m.payload["state"] for m in states.drain()]
        readings.close()
        states.close()
    assert reading.topic == "sensors/temperature"
    assert reading.payload == {"from": "thermometer", "value": 21.5}
    assert reading.source == "test.Publisher"  # the token's owner, not a claimed name
    refused = [line for line in lines if line.startswith("refused:")]
    assert len(refused) == 1
    assert "test.Publisher" in refused[0] and "forbidden/topic" in refused[0]
    assert reported == ["NEW", "INSTALLED", "RUNNING", "FINISHED"]


IOT_SCRIPT = """\
from actors.ipc.client import connect_sync
with connect_sync() as ipc:
    ipc.publish_to_iot_core("things/edge/telemetry", "21.5", qos=1)
"""


async def test_publish_to_iot_core_reaches_the_configured_mqtt_broker(tmp_path: Path) -> None:
    import aiomqtt

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
        (tmp_path / "iot.py").write_text(IOT_SCRIPT)
        recipe(recipes, "test.Iot", config="""\
            accessControl:
              aws.greengrass.ipc.mqttproxy:
                test.Iot:mqttproxy:1:
                  operations: [aws.greengrass#PublishToIoTCore]
                  resources: [things/edge/#]
        """, lifecycle=f"""\
            Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "iot.py"}'  # awsiotsdk is the runtime's
        """)
        settings = MqttSettings("127.0.0.1", broker.port)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher") as watcher:
            await watcher.subscribe("things/#", qos=1)
            async with Nucleus(tmp_path / "root", thing_name="edge", mqtt=settings) as nucleus:
                record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                                merge={"test.Iot": "1.0.0"}))
                assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
                with anyio.fail_after(20):
                    message = await anext(aiter(watcher.messages))
        assert str(message.topic) == "things/edge/telemetry"
        assert message.payload == b"21.5"
    finally:
        broker.kill()
