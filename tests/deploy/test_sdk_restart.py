"""An SDK component across a runtime restart, as under Greengrass: the runtime's stop
stops its process; the next runtime on the same root starts it again with a fresh
SVCUID, it connects as written (``GreengrassCoreIPCClientV2()``) and works; the
old token is refused."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from ..component.test_lifecycle import recipe
from .test_sdk_components import PRELUDE

pytestmark = pytest.mark.anyio
pytest.importorskip("awsiot", reason="awsiotsdk is not installed (pip install awsiotsdk)")

ECHO = PRELUDE + """\
import os
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

ipc = GreengrassCoreIPCClientV2()
with open(sys.argv[1], "a") as tokens:
    tokens.write(os.environ["SVCUID"] + "\\n")

def on_ping(event):
    ipc.publish_to_topic(topic="restart/pong", publish_message=PublishMessage(
        json_message=JsonMessage(message={"pid": os.getpid(),
                                          "n": event.json_message.message["n"]})))

ipc.subscribe_to_topic(topic="restart/ping", on_stream_event=on_ping)
threading.Event().wait()
"""

OUTSIDER = """\
import sys
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage
try:
    ipc = GreengrassCoreIPCClientV2()
    ipc.publish_to_topic(topic="restart/pong", publish_message=PublishMessage(
        json_message=JsonMessage(message={"pid": 0, "n": -1})))
except Exception as exc:
    print(type(exc).__name__)
else:
    print("connected")
"""


async def ping(nucleus: Nucleus, n: int) -> dict[str, Any]:
    """The component's answer to ping ``n`` (sent again until it is subscribed)."""
    async with nucleus.ipc.broker.subscribe("$nucleus", "restart/pong") as pongs:
        with anyio.fail_after(30):
            while True:
                await nucleus.publish("restart/ping", {"n": n})
                with anyio.move_on_after(0.5):
                    answer: dict[str, Any] = (await pongs.receive()).payload
                    return answer


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process its parent did not reap yet does not:
    here one whose parent died is left to a PID 1 that may never reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
    return state not in ("Z", "X")


async def test_an_sdk_component_comes_back_with_the_runtime(tmp_path: Path) -> None:
    recipes, tokens, root = tmp_path / "recipes", tmp_path / "tokens", tmp_path / "root"
    (tmp_path / "echo.py").write_text(ECHO)
    recipe(recipes, "test.Echo", config="""\
        accessControl:
          aws.greengrass.ipc.pubsub:
            test.Echo:pubsub:1:
              operations: ["*"]
              resources: [restart/*]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "echo.py"} {tokens}'
    """)
    lines: list[str] = []
    first = Nucleus(root)
    first.on_output(lambda name, line: lines.append(line))
    async with first:
        record = await first.deploy(DeploymentRequest(recipe_dir=recipes,
                                                       merge={"test.Echo": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        before = await ping(first, 1)
    # The runtime's stop stopped the component's process.
    assert before["n"] == 1
    assert not alive(before["pid"]), "the component outlived the runtime"

    second = Nucleus(root)
    second.on_output(lambda name, line: lines.append(line))
    async with second:
        await second.wait_states(["test.Echo"], [State.RUNNING], timeout=30)
        after = await ping(second, 2)
        old, new = tokens.read_text().split()
        environment = {**os.environ, "SVCUID": old,
                       "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT":
                           str(root / "ipc.socket")}
        with anyio.fail_after(60):
            outsider = await anyio.run_process([sys.executable, "-c", OUTSIDER],
                                               env=environment, check=False)
        state = second.status["test.Echo"].state
    output = "\n".join(lines)
    # Started again by the new runtime: a new process, a new token, the same code.
    assert after["n"] == 2 and after["pid"] != before["pid"], output
    assert old != new
    assert state is State.RUNNING, output
    # The token of the process the first runtime ran is no longer valid.
    # The SDK raises AccessDeniedError on the CONNECT_ACK without CONNECTION_ACCEPTED,
    # or AwsCrtError AWS_IO_SOCKET_CLOSED when its own close of the refused connection
    # wins the race in the CRT (it does even when the server leaves the connection open).
    assert outsider.stdout.decode().strip() in ("AccessDeniedError", "AwsCrtError"), \
        outsider.stderr.decode()
