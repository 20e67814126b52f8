"""The deployment-facing streams through the real SDK in a component process:
SubscribeToValidateConfigurationUpdates + SendConfigurationValidityReport, and
SubscribeToComponentUpdates + DeferComponentUpdate (what a deployment calls:
IpcService.validate_configuration and notify_component_update)."""

from __future__ import annotations

import os
import sys

import anyio
import pytest

from actors.ipc import Deferral, IpcServer, IpcService

pytestmark = pytest.mark.anyio
pytest.importorskip("awsiot", reason="awsiotsdk is not installed (pip install awsiotsdk)")

SCRIPT = """
import threading
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

ipc = GreengrassCoreIPCClientV2()
done = threading.Event()

def on_validate(event):
    request = event.validate_configuration_update_event
    ok = request.configuration.get("threshold", 0) <= 1
    ipc.send_configuration_validity_report(
        configuration_validity_report=ConfigurationValidityReport(
            status="ACCEPTED" if ok else "REJECTED", deployment_id=request.deployment_id,
            message="" if ok else "threshold must be at most 1"))

def on_update(event):
    if event.pre_update_event is not None:
        ipc.defer_component_update(deployment_id=event.pre_update_event.deployment_id,
                                   message="busy inferring", recheck_after_ms=5000)
    else:
        done.set()

ipc.subscribe_to_validate_configuration_updates(on_stream_event=on_validate)
ipc.subscribe_to_component_updates(on_stream_event=on_update)
print("subscribed", flush=True)
done.wait(30)
"""


async def test_validation_reports_and_deferrals_come_back_from_an_sdk_component(
        server: IpcServer, service: IpcService) -> None:
    name = "com.example.Subscriber"
    env = {**os.environ, **server.environment(name)}
    deferrals: list[Deferral] = []
    service.on_deferral(deferrals.append)
    async with await anyio.open_process([sys.executable, "-c", SCRIPT], env=env) as proc:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            assert b"subscribed" in await proc.stdout.receive()
            while name not in service.validation_subscribers():
                await anyio.sleep(0.01)
            rejected = await service.validate_configuration(name, {"threshold": 2}, "d-1")
            accepted = await service.validate_configuration(name, {"threshold": 0.5}, "d-2")
            assert await service.validate_configuration("no.Subscriber", {}, "d-3") is None
            told = service.notify_component_update("d-4")
            while not deferrals:
                await anyio.sleep(0.01)
            service.notify_component_update("d-4", post=True)
            await proc.wait()
    assert rejected == ("REJECTED", "threshold must be at most 1")
    assert accepted == ("ACCEPTED", "")
    assert told == {name}
    deferral = deferrals[0]
    assert (deferral.component, deferral.deployment_id, deferral.message,
            deferral.recheck_after_ms) == (name, "d-4", "busy inferring", 5000)
    assert proc.returncode == 0
