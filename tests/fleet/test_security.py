"""Security of the fleet: the broker (TLS client certificates, the ACLs `fleet acl` makes)
keeps each device to its own notices and status; a tampered artifact fails that device's
deployment and leaves the previous version running."""

from __future__ import annotations

import anyio
import orjson
import pytest

from actors.fleet import _topics as topics
from actors.fleet._link import Link
from actors.fleet._status import retained

from .fleet import Fleet, devices

pytestmark = pytest.mark.anyio


@pytest.fixture
def fleet(fleet: Fleet, device_credentials: None) -> Fleet:
    """The shared fleet, its devices' runtimes on read-only registry credentials."""
    return fleet


async def test_a_device_cannot_read_another_devices_notices_nor_write_its_status(
        fleet: Fleet) -> None:
    controller = fleet.settings()
    # The controller leaves dev-a a notice (retained) and reads dev-a's status topic.
    seen: list[tuple[str, bytes]] = []
    sender = Link(controller, [topics.update_filter(thing="dev-a")],
                  lambda t, p: seen.append((t, p)))
    stolen: list[str] = []
    intruder = Link(fleet.settings("dev-b"),
                    [topics.notify_filter("dev-a"), topics.notify_filter("dev-b")],
                    lambda t, p: stolen.append(t))
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        await sender.wait_connected()
        sender.publish(topics.notify("dev-a", "thinggroup/g"), b'{"secret": 1}', retain=True)
        sender.publish(topics.notify("dev-b", "thinggroup/g"), b'{"thingName": "dev-b"}',
                       retain=True)
        await sender.wait_sent()
        await tg.start(intruder.run)
        await intruder.wait_connected()
        # dev-b writes a status as dev-a, and a notice for dev-a: both are dropped.
        intruder.publish(topics.update("dev-a", "d-1"), orjson.dumps(
            {"thingName": "dev-a", "status": "SUCCEEDED"}), retain=True)
        intruder.publish(topics.notify("dev-a", "thinggroup/g"), b'{"forged": 1}', retain=True)
        await intruder.wait_sent()
        await anyio.sleep(0.5)
        tg.cancel_scope.cancel()
    # mosquitto 2.0 grants the subscription but delivers nothing the ACL denies.
    assert stolen == [topics.notify("dev-b", "thinggroup/g")]  # its own notice only
    assert seen == []
    notices = await retained(controller, topics.notify_filter("dev-a"))
    assert notices == {"dev-a": {"secret": 1}}


async def test_a_tampered_artifact_fails_that_device_and_keeps_the_previous_version(
        fleet: Fleet) -> None:
    await fleet.publish({"test.Runtime": "1.0.0", "test.Model": "1.0.0", "test.App": "1.0.0"})
    async with devices(fleet, ["dev-a"]) as running:
        first = await fleet.deploy("thing/dev-a", {"test.App": "1.0.0"})
        assert first.counts() == {"SUCCEEDED": 1}
        await fleet.publish({"test.Model": "1.1.0"})
        # Someone with write access replaces the published artifact.
        prefix = fleet.url[len("s3://fleet/"):]
        fleet.registry_server.client().put_object(
            Bucket="fleet", Key=f"{prefix}/components/test.Model/1.1.0/artifacts/labels.txt",
            Body=b"not what was published\n")
        second = await fleet.deploy("thing/dev-a", {"test.App": "1.0.0",
                                                    "test.Model": "1.1.0"})
        execution = second.executions["dev-a"]
        assert execution.status == "FAILED", second.to_json()
        assert "labels.txt" in execution.cause and "digest" in execution.cause.lower()
        status = running["dev-a"].nucleus.status
        assert {n: s.version for n, s in status.items()} == {
            "test.Runtime": "1.0.0", "test.Model": "1.0.0", "test.App": "1.0.0"}
        assert str(status["test.Model"].state) == "RUNNING"
        # A later deployment to the device succeeds: the broker keeps its report, and
        # drops the retained report of the deployment it replaced.
        third = await fleet.deploy("thing/dev-a", {"test.App": "1.0.0", "test.Model": "1.0.0"})
        assert third.counts() == {"SUCCEEDED": 1}
        await running["dev-a"].agent.link.wait_sent()
    first_id, third_id = first.deployment.deployment_id, third.deployment.deployment_id
    assert await retained(fleet.settings(), topics.update_filter(first_id)) == {}
    kept = await retained(fleet.settings(), topics.update_filter(third_id))
    assert kept["dev-a"]["status"] == "SUCCEEDED"
