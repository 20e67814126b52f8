"""Fleet deployments end to end: real runtimes (several per process, a root folder each),
mosquitto with TLS client certificates and the generated ACLs, SeaweedFS as the registry."""

from __future__ import annotations

import itertools

import anyio
import orjson
import pytest

from actors.component import State
from actors.fleet._controller import RolloutResult
from actors.fleet._model import AbortCriterion, Rollout
from actors.fleet._status import merge_status, retained
from actors.fleet._topics import update_filter

from .conftest import write
from .fleet import Fleet, devices, start_device

pytestmark = pytest.mark.anyio


@pytest.fixture
def fleet(fleet: Fleet, device_credentials: None) -> Fleet:
    """The shared fleet, its devices' runtimes on read-only registry credentials."""
    return fleet

STACK_1 = {"test.Runtime": "1.0.0", "test.Model": "1.0.0", "test.App": "1.0.0"}


def versions(device: object) -> dict[str, str]:
    return {n: s.version for n, s in device.nucleus.status.items()}  # type: ignore[attr-defined]


async def test_twenty_devices_then_a_broken_version_rolls_back_and_aborts(fleet: Fleet) -> None:
    things = [f"dev-{i:02}" for i in range(20)]
    await fleet.publish(STACK_1)
    async with fleet.registry() as registry:
        await registry.add_to_group("line-1", things)
    async with devices(fleet, things) as running:
        result = await fleet.deploy("thinggroup/line-1", {"test.App": "1.0.0"})
        assert result.counts() == {"SUCCEEDED": 20}, result.to_json()
        for device in running.values():
            assert versions(device) == STACK_1
            assert {s.state for s in device.nucleus.status.values()} == {State.RUNNING}
        report = result.executions["dev-07"]
        assert report.detailed == "SUCCESSFUL"
        assert report.components["test.App"] == {"version": "1.0.0", "state": "RUNNING"}

        # A new version whose install fails: each device that takes it rolls back; the
        # rollout stops once half of at least 3 executed devices failed.
        await fleet.publish({"test.App": "2.0.0"}, broken=True)
        broken = await fleet.deploy(
            "thinggroup/line-1", {"test.App": "2.0.0"},
            rollout=Rollout(maximum_per_minute=600, base_rate_per_minute=60,
                            increment_factor=2, succeeded_to_increase=5),
            abort=(AbortCriterion("FAILED", 50, 3),))
        counts = broken.counts()
        assert broken.aborted.startswith("abort criterion met: FAILED >= 50%")
        assert counts["FAILED"] >= 3
        assert counts["CANCELED"] >= 12, broken.to_json()
        assert set(counts) <= {"FAILED", "CANCELED"}
        for thing, execution in broken.executions.items():
            device = running[thing]
            assert versions(device) == STACK_1, thing  # rolled back, or never touched
            ids = [r.deployment_id for r in device.nucleus.history()]
            if execution.status == "FAILED":
                assert execution.detailed == "FAILED_ROLLBACK_COMPLETE"
                assert "test.App: install step exited with code 1" in execution.cause
                assert ids[-1] == broken.deployment.deployment_id
            else:
                assert broken.deployment.deployment_id not in ids, thing
    # The controller's view is in the registry.
    async with fleet.registry() as registry:
        saved = await registry.get_json(registry.status_key(broken.deployment.deployment_id))
    assert saved["summary"] == dict(sorted(counts.items()))
    assert orjson.dumps(saved)  # plain JSON


async def test_offline_devices_catch_up_and_a_broker_restart_loses_nothing(
        fleet: Fleet) -> None:
    things = [f"dev-{i}" for i in range(8)]
    online, offline = things[:6], things[6:]  # a quarter never connected yet
    await fleet.publish(STACK_1)
    async with fleet.registry() as registry:
        await registry.add_to_group("line-2", things)
    results: list[RolloutResult] = []

    async def deploy() -> None:
        results.append(await fleet.deploy(
            "thinggroup/line-2", {"test.App": "1.0.0"},
            rollout=Rollout(maximum_per_minute=240),  # one every 0.25 s
            inline_limit=0))  # the devices read the document from the registry

    async with devices(fleet, online) as running, anyio.create_task_group() as tg:
        tg.start_soon(deploy)
        # The broker dies (kill -9) and comes back as the first device got its notice:
        # the rest are notified, and report, through the restarted broker.
        while not any(d.agent.link.received for d in running.values()):
            await anyio.sleep(0.01)
        fleet.broker.restart()
        while sum(d.agent.applied for d in running.values()) < len(online):
            await anyio.sleep(0.05)
        for thing in offline:  # they start now: their retained notices are waiting
            running[thing] = await start_device(fleet, tg, thing)
        while not results:
            await anyio.sleep(0.05)
        result = results[0]
        assert result.counts() == {"SUCCEEDED": 8}, result.to_json()
        for device in running.values():
            assert versions(device) == STACK_1
            assert device.agent.s3_requests == 1  # its document, with read-only credentials
            # Applied once, whatever was sent again after the restart.
            assert [r.deployment_id for r in device.nucleus.history()] == [
                result.deployment.deployment_id]
        for thing in offline:
            running[thing].scope.cancel()


async def test_cancel_stops_the_rollout(fleet: Fleet) -> None:
    things = [f"dev-{i}" for i in range(3)]
    await fleet.publish(STACK_1)
    async with fleet.registry() as registry:
        await registry.add_to_group("line-3", things)
    results: list[RolloutResult] = []
    async with devices(fleet, things) as running, anyio.create_task_group() as tg:
        async def deploy() -> None:
            results.append(await fleet.deploy(
                "thinggroup/line-3", {"test.App": "1.0.0"},
                rollout=Rollout(maximum_per_minute=2)))  # the next one in 30 s

        tg.start_soon(deploy)
        while not any(d.agent.applied for d in running.values()):
            await anyio.sleep(0.05)
        async with fleet.registry() as registry:
            ids = (await registry.get_json(registry.target_key("thinggroup/line-3")))
        # `edge-actors fleet cancel`, from another process.
        from .test_cli import cli, controller_flags

        canceled = await anyio.to_thread.run_sync(lambda: cli(
            fleet, "fleet", "cancel", ids["deploymentId"], *controller_flags(fleet)))
        assert canceled.returncode == 0, canceled.stdout + canceled.stderr
    result = results[0]
    assert result.aborted == "canceled"
    assert result.counts() == {"SUCCEEDED": 1, "CANCELED": 2}, result.to_json()
    touched = [t for t, d in running.items() if d.nucleus.history()]
    assert touched == [t for t, e in result.executions.items() if e.status == "SUCCEEDED"]


async def test_a_device_past_the_timeout_is_timed_out_and_its_later_report_shows(
        fleet: Fleet) -> None:
    from .test_cli import SLOW_APP

    await fleet.publish({"test.Runtime": "1.0.0"})
    async with fleet.registry() as registry:
        await registry.publish(write(fleet.folder / "slow.yaml", SLOW_APP.replace(
            "sleep 60", "sleep 3")), None)
    async with devices(fleet, ["dev-a"]) as running:
        result = await fleet.deploy("thing/dev-a", {"test.App": "1.1.0"}, timeout_seconds=1.0)
        execution = result.executions["dev-a"]
        assert execution.status == "TIMED_OUT"
        assert execution.cause == "no result within 1 s of IN_PROGRESS"
        while not running["dev-a"].agent.applied:
            await anyio.sleep(0.05)
        await running["dev-a"].agent.link.wait_sent()
    # `fleet status`: the device's own report (retained) wins over the controller's view.
    async with fleet.registry() as registry:
        saved = await registry.get_json(registry.status_key(result.deployment.deployment_id))
    reports = await retained(fleet.settings(),
                             update_filter(result.deployment.deployment_id))
    view = merge_status(result.deployment.to_json(), saved, reports)
    assert saved["summary"] == {"TIMED_OUT": 1}
    assert view["summary"] == {"SUCCEEDED": 1}


async def test_a_device_runs_the_union_of_its_groups_and_a_new_deployment_replaces(
        fleet: Fleet) -> None:
    await fleet.publish({"test.Runtime": "1.0.0", "test.Model": "1.0.0"})
    async with fleet.registry() as registry:
        await registry.add_to_group("cameras", ["dev-a"])
        await registry.add_to_group("site-1", ["dev-a"])
    async with devices(fleet, ["dev-a"]) as running:
        device = running["dev-a"]
        first = await fleet.deploy("thinggroup/cameras", {"test.Model": "1.0.0"})
        second = await fleet.deploy("thinggroup/site-1", {"test.Runtime": "1.0.0"})
        assert first.counts() == second.counts() == {"SUCCEEDED": 1}
        assert versions(device) == {"test.Model": "1.0.0", "test.Runtime": "1.0.0"}
        # The group's new deployment replaces its previous one: test.Model goes, what
        # the other group deploys stays.
        third = await fleet.deploy("thinggroup/cameras", {"test.Runtime": "1.0.0"})
        assert third.counts() == {"SUCCEEDED": 1}
        assert versions(device) == {"test.Runtime": "1.0.0"}
        assert third.executions["dev-a"].components == {
            "test.Runtime": {"version": "1.0.0", "state": "RUNNING"}}


async def test_the_rollout_rate_rises_exponentially(fleet: Fleet) -> None:
    # No device answers: what is observed is when each was notified. From 60 a minute,
    # doubled each time 2 more devices were notified: gaps of 1, 0.5, 0.5, 0.25, 0.25 s.
    things = [f"dev-{i}" for i in range(6)]
    await fleet.publish({"test.Runtime": "1.0.0"})
    async with fleet.registry() as registry:
        await registry.add_to_group("slow", things)
    result = await fleet.deploy("thinggroup/slow", {"test.Runtime": "1.0.0"}, wait=3.0,
                                rollout=Rollout(maximum_per_minute=1000,
                                                base_rate_per_minute=60,
                                                increment_factor=2, notified_to_increase=2))
    assert result.counts() == {"QUEUED": 6}
    times = [result.executions[t].notified or 0.0 for t in things]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] > 0.8
    assert gaps[0] > gaps[2] > gaps[4] > 0.1, gaps


async def test_fleet_cancel_without_a_controller(fleet: Fleet) -> None:
    """`fleet cancel` from another process while no controller runs: a device that was
    notified but offline never applies it and reports CANCELED when it connects, one never
    notified is CANCELED, one that finished keeps its result."""
    from .test_cli import cli, controller_flags

    things = ["dev-a", "dev-b", "dev-c"]
    await fleet.publish(STACK_1)
    async with fleet.registry() as registry:
        await registry.add_to_group("line-4", things)
    async with anyio.create_task_group() as tg:
        # dev-b has a persistent session: the notice is queued for it while it is away.
        (await start_device(fleet, tg, "dev-b")).scope.cancel()
        device_a = await start_device(fleet, tg, "dev-a")
        # One device every 3 s: dev-a at once, dev-b (offline) at 3 s, dev-c never (the
        # controller stops following at 4.5 s).
        result = await fleet.deploy("thinggroup/line-4", {"test.App": "1.0.0"}, wait=4.5,
                                    rollout=Rollout(maximum_per_minute=20))
        deployment_id = result.deployment.deployment_id
        while not device_a.agent.applied:
            await anyio.sleep(0.05)
        await device_a.agent.link.wait_sent()
        assert {t: str(e.status) for t, e in result.executions.items()} == {
            "dev-a": "SUCCEEDED", "dev-b": "QUEUED", "dev-c": "None"}

        canceled = await anyio.to_thread.run_sync(lambda: cli(
            fleet, "fleet", "cancel", deployment_id, *controller_flags(fleet)))
        assert canceled.returncode == 0, canceled.stdout + canceled.stderr
        assert "1 device notice(s) withdrawn" in canceled.stdout

        later = {t: await start_device(fleet, tg, t) for t in ("dev-b", "dev-c")}
        while not later["dev-b"].agent.applied:
            await anyio.sleep(0.05)
        await later["dev-b"].agent.link.wait_sent()
        await anyio.sleep(1.0)  # dev-c: nothing comes
        for device in later.values():
            assert device.nucleus.history() == []
            assert versions(device) == {}
        assert later["dev-b"].agent.state["reported"][deployment_id]["status"] == "CANCELED"
        assert later["dev-c"].agent.applied == 0
        assert versions(device_a) == STACK_1  # its result stands

        status = await anyio.to_thread.run_sync(lambda: cli(
            fleet, "fleet", "status", deployment_id, *controller_flags(fleet)))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0].startswith("dev-a  SUCCEEDED")
        assert lines[1].startswith("dev-b  CANCELED")
        assert lines[2].startswith("dev-c  CANCELED")
        assert lines[3] == "summary: SUCCEEDED 1, CANCELED 2"
        async with fleet.registry() as registry:
            assert await registry.exists(registry.cancel_key(deployment_id))
        tg.cancel_scope.cancel()


async def test_a_restarted_agent_takes_its_groups_from_the_runtime(fleet: Fleet) -> None:
    """The agent keeps no file of its own: after a restart the runtime's deployed state
    tells it each group's deployment in place and roots. A new deployment to the group
    then removes the root it drops and clears the replaced deployment's retained report;
    the retained notice of the deployment in place, its record gone from the runtime's
    short history, is not applied again."""
    await fleet.publish({"test.Runtime": "1.0.0", "test.Model": "1.0.0"})
    async with fleet.registry() as registry:
        await registry.add_to_group("restart", ["dev-r"])
    async with devices(fleet, ["dev-r"]) as running:
        first = await fleet.deploy("thinggroup/restart",
                                   {"test.Runtime": "1.0.0", "test.Model": "1.0.0"})
        assert first.counts() == {"SUCCEEDED": 1}, first.to_json()
        await running["dev-r"].agent.link.wait_sent()
    root = fleet.folder / "devices" / "dev-r"
    assert not (root / "fleet").exists()  # nothing of the agent's own on disk
    (root / "deployments" / "history.json").unlink()  # as if 20 deployments had passed
    first_id = first.deployment.deployment_id
    async with devices(fleet, ["dev-r"]) as running:
        device = running["dev-r"]
        assert device.agent.state["groups"] == {"thinggroup/restart": {
            "deploymentId": first_id,
            "roots": {"test.Runtime": "1.0.0", "test.Model": "1.0.0"}}}
        assert device.agent.health()["groups"] == {"thinggroup/restart": first_id}
        second = await fleet.deploy("thinggroup/restart", {"test.Runtime": "1.0.0"})
        assert second.counts() == {"SUCCEEDED": 1}, second.to_json()
        assert versions(device) == {"test.Runtime": "1.0.0"}
        # The first deployment's notice came again on connecting: not applied again.
        assert [r.deployment_id for r in device.nucleus.history()] == [
            second.deployment.deployment_id]
        await device.agent.link.wait_sent()
    assert await retained(fleet.settings(), update_filter(first_id)) == {}
