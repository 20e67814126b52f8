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
        Run: python3 -u {tmp_path / "publisher.py"}
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
