"""CancelLocalDeployment through the AWS IoT Device SDK from a component process, as
greengrass-cli's handler and the nucleus's deployment service answer it: a queued
deployment is withdrawn, the one in progress is stopped while it has changed
nothing (here: waiting for a component that defers it), a finished one is left
alone, an unknown id or one that is not a UUID is refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DeploymentStatus, DetailedStatus
from actors.ipc import CLI_IDENTITY, CallContext
from actors.nucleus import Nucleus

from ..component.test_lifecycle import recipe
from .test_sdk_components import PRELUDE, results

pytestmark = pytest.mark.anyio
pytest.importorskip("awsiot", reason="awsiotsdk is not installed (pip install awsiotsdk)")

CANCELLER = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

ipc = GreengrassCoreIPCClientV2()
told = {}

def on_update(event):
    # Every deployment is deferred by a minute: it waits, in progress, for this component.
    if event.pre_update_event is not None:
        deployment = event.pre_update_event.deployment_id
        told.setdefault(deployment, threading.Event()).set()
        ipc.defer_component_update(deployment_id=deployment, message="busy",
                                   recheck_after_ms=60000)

def status(deployment):
    return ipc.get_local_deployment_status(deployment_id=deployment).deployment.status

def cancel(deployment):
    return ipc.cancel_local_deployment(deployment_id=deployment).message

ipc.subscribe_to_component_updates(on_stream_event=on_update)
first = ipc.create_local_deployment(recipe_directory_path=sys.argv[1],
                                    root_component_versions_to_add={"test.Other": "1.0.0"}
                                    ).deployment_id
assert told.setdefault(first, threading.Event()).wait(30), "never told of the deployment"
second = ipc.create_local_deployment(recipe_directory_path=sys.argv[1],
                                     root_component_versions_to_add={"test.Third": "1.0.0"}
                                     ).deployment_id
report("ids", [first, second])
report("before", [status(first), status(second)])
report("cancel queued", cancel(second))
report("cancel in progress", cancel(first))
deadline = time.time() + 30
while time.time() < deadline and {status(first), status(second)} & {"QUEUED", "IN_PROGRESS"}:
    time.sleep(0.1)
report("after", [status(first), status(second)])
listed = {d.deployment_id: d.status for d in ipc.list_local_deployments().local_deployments}
report("listed", [listed.get(first), listed.get(second)])
report("cancel finished", cancel(first))
report("cancel unknown", error_of(lambda: cancel(sys.argv[2])))
report("cancel not a uuid", error_of(lambda: cancel("yesterday's")))
report("components", sorted(c.component_name for c in ipc.list_components().components))
report("done", True)
"""

REFUSED = PRELUDE + """\
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

ipc = GreengrassCoreIPCClientV2()
report("refused", error_of(lambda: ipc.cancel_local_deployment(deployment_id=sys.argv[1])))
report("done", True)
"""


async def test_an_sdk_component_cancels_queued_and_waiting_deployments(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (tmp_path / "canceller.py").write_text(CANCELLER)
    (tmp_path / "refused.py").write_text(REFUSED)
    unknown = str(uuid.uuid4())
    recipe(recipes, "test.Canceller", config="""\
        accessControl:
          aws.greengrass.Cli:
            test.Canceller:cli:1:
              operations: ["*"]
              resources: ["*"]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "canceller.py"} {recipes} {unknown}'
    """)
    recipe(recipes, "test.Refused", config="""\
        accessControl:
          aws.greengrass.Cli:
            test.Refused:cli:1:
              operations: [aws.greengrass#ListLocalDeployments]
              resources: ["*"]
    """, lifecycle=f"""\
        Run: '"$EDGE_ACTORS_PYTHON" -u {tmp_path / "refused.py"} {unknown}'
    """)
    for name in ("test.Other", "test.Third"):
        recipe(recipes, name, lifecycle="Run: sleep 60\n")
    lines: list[tuple[str, str]] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append((name, line)))
    names = ["test.Canceller", "test.Refused"]
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge=dict.fromkeys(names, "1.0.0")))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(names, [State.FINISHED, State.BROKEN], timeout=120)
        states = {name: nucleus.status[name].state for name in names}
        deployed = set(nucleus.status)
        history = {r.deployment_id: r for r in nucleus.history()}
    output = "\n".join(line for _, line in lines)
    assert states == dict.fromkeys(names, State.FINISHED), output
    result = results(lines, "test.Canceller")
    first, second = result["ids"]
    assert result["before"] == ["IN_PROGRESS", "QUEUED"]
    assert result["cancel queued"] == f"Cancel request submitted. Deployment ID: {second}"
    assert result["cancel in progress"] == f"Cancel request submitted. Deployment ID: {first}"
    assert result["after"] == ["CANCELED", "CANCELED"]
    assert result["listed"] == ["CANCELED", "CANCELED"]
    assert result["cancel finished"] == ("Cancellation request is not processed because "
                                         "deployment is already finished")
    assert result["cancel unknown"] == ["ResourceNotFoundError",
                                        f"Cannot find the deployment id provided {unknown}"]
    assert result["cancel not a uuid"] == [
        "InvalidArgumentsError", "Invalid deploymentId format received. DeploymentId is a UUID"]
    # Neither deployment changed anything: test.Other and test.Third never ran.
    assert result["components"] == names
    assert deployed == set(names)
    for deployment in (first, second):
        assert history[deployment].status is DeploymentStatus.CANCELED
        assert history[deployment].detailed_status is None
    assert result["done"] is True
    refused = results(lines, "test.Refused")
    assert refused["refused"][0] == "UnauthorizedError"
    assert "test.Refused" in refused["refused"][1]
    assert "CancelLocalDeployment" in refused["refused"][1]


async def test_a_deployment_past_its_changes_is_not_canceled(tmp_path: Path) -> None:
    """Once components are being stopped and started, a cancel is too late (the
    nucleus lets such a deployment finish): the deployment succeeds."""
    recipes = tmp_path / "recipes"
    started = tmp_path / "installing"
    recipe(recipes, "test.Slow", lifecycle=f"""\
        Install: 'touch {started}; sleep 2'
        Run: sleep 60
    """)
    nucleus = Nucleus(tmp_path / "root")
    async with nucleus:
        request = DeploymentRequest(recipe_dir=recipes, merge={"test.Slow": "1.0.0"})
        async with anyio.create_task_group() as tasks:
            records = []

            async def deploy() -> None:
                records.append(await nucleus.deploy(request))
            tasks.start_soon(deploy)
            with anyio.fail_after(30):
                while not started.exists():
                    await anyio.sleep(0.02)
            answer = await nucleus.ipc.call(CallContext(CLI_IDENTITY), "CancelLocalDeployment",
                                            {"deploymentId": request.deployment_id})
        state = nucleus.status["test.Slow"].state
    assert answer == {"message": f"Cancel request submitted. Deployment ID: "
                                 f"{request.deployment_id}"}
    assert records[0].status is DeploymentStatus.SUCCEEDED, records[0].cause
    assert state is State.RUNNING

