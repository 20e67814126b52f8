"""A fleet deployment's ``iotJobConfiguration`` (rollout, abort criteria, timeout), checked
key by key as Greengrass's CreateDeployment checks it, and `fleet deploy
--iot-job-configuration JSON|@FILE` rolling out by it (mosquitto and SeaweedFS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.fleet import FleetDeployment, FleetError
from actors.fleet._model import AbortCriterion, Rollout, iot_job_configuration

from .conftest import write
from .fleet import Fleet

JOB = "iotJobConfiguration"
CRITERION = {"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50,
             "minNumberOfExecutedThings": 3}


@pytest.mark.parametrize(("job", "message"), [
    ({"rollout": {}}, "iotJobConfiguration: unknown key 'rollout', must be one of: "
     "jobExecutionsRolloutConfig, abortConfig, timeoutConfig"),
    ({"jobExecutionsRolloutConfig": {"maximumPerMinute": 5000}},
     "iotJobConfiguration.jobExecutionsRolloutConfig.maximumPerMinute: 5000: expected a "
     "whole number from 1 to 1000"),
    ({"jobExecutionsRolloutConfig": {"maximumPerMinute": "10"}},
     'maximumPerMinute: "10": expected a whole number from 1 to 1000'),
    ({"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 10,
                                                         "incrementFactor": 2}}},
     "iotJobConfiguration.jobExecutionsRolloutConfig.exponentialRate: missing "
     "rateIncreaseCriteria (required)"),
    ({"jobExecutionsRolloutConfig": {"exponentialRate": {
        "baseRatePerMinute": 10, "incrementFactor": 6, "rateIncreaseCriteria": {}}}},
     "exponentialRate.incrementFactor: 6: expected a number from 1 to 5"),
    ({"jobExecutionsRolloutConfig": {"exponentialRate": {
        "baseRatePerMinute": 10, "incrementFactor": 2,
        "rateIncreaseCriteria": {"numberOfNotifiedThings": 0}}}},
     "rateIncreaseCriteria.numberOfNotifiedThings: 0: expected a whole number 1 or more"),
    ({"abortConfig": {"criteriaList": []}},
     "iotJobConfiguration.abortConfig.criteriaList: []: expected a list of one criterion "
     "or more"),
    ({"abortConfig": {"criteriaList": [{**CRITERION, "action": "STOP"}]}},
     'iotJobConfiguration.abortConfig.criteriaList[0].action: "STOP": expected CANCEL'),
    ({"abortConfig": {"criteriaList": [CRITERION, {**CRITERION, "failureType": "ERRORS"}]}},
     'criteriaList[1].failureType: "ERRORS": expected FAILED or REJECTED or TIMED_OUT or '
     "ALL"),
    ({"abortConfig": {"criteriaList": [{k: v for k, v in CRITERION.items()
                                        if k != "action"}]}},
     "iotJobConfiguration.abortConfig.criteriaList[0]: missing action (required)"),
    ({"abortConfig": {"criteriaList": [{**CRITERION, "thresholdPercentage": 101}]}},
     "criteriaList[0].thresholdPercentage: 101: expected a number from 0 to 100"),
    ({"timeoutConfig": {"inProgressTimeoutInMinutes": 1.5}},
     "iotJobConfiguration.timeoutConfig.inProgressTimeoutInMinutes: 1.5: expected a whole "
     "number 1 or more"),
])
def test_bad_iot_job_configurations_are_refused_naming_the_key(job: Any,
                                                                message: str) -> None:
    with pytest.raises(FleetError) as caught:
        iot_job_configuration(job)
    assert message in str(caught.value)


def test_an_iot_job_configuration_reads_into_the_rollout_and_back() -> None:
    job = {"jobExecutionsRolloutConfig": {
               "maximumPerMinute": 600,
               "exponentialRate": {"baseRatePerMinute": 60, "incrementFactor": 2.0,
                                   "rateIncreaseCriteria": {"numberOfSucceededThings": 5}}},
           "abortConfig": {"criteriaList": [CRITERION]},
           "timeoutConfig": {"inProgressTimeoutInMinutes": 2}}
    read = iot_job_configuration(job)
    assert read == {"rollout": Rollout(600, 60, 2.0, None, 5),
                    "abort": (AbortCriterion("FAILED", 50.0, 3),), "timeout_seconds": 120.0}
    written = FleetDeployment("thing/dev-a", {}, **read).to_json()[JOB]
    assert written["timeoutConfig"] == {"inProgressTimeoutInMinutes": 2,
                                        "inProgressTimeoutInSeconds": 120.0}
    assert iot_job_configuration(written) == read
    assert iot_job_configuration({"timeoutConfig": {"inProgressTimeoutInSeconds": 1.5}}) == \
        {"timeout_seconds": 1.5}


def deploy_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors", "fleet", "deploy",
                           "--registry", "s3://nowhere/fleet", "--broker", "mqtt://127.0.0.1:9",
                           "--target", "thing/dev-a", "--component", "test.App=1.0.0", *args],
                          capture_output=True, text=True, timeout=60)


def test_the_command_line_refuses_a_bad_job_configuration_before_touching_anything() -> None:
    refused = deploy_cli("--iot-job-configuration",
                         '{"jobExecutionsRolloutConfig": {"maximumPerMinute": 0}}')
    assert refused.returncode == 1
    assert refused.stderr == (
        "edge-actors: --iot-job-configuration: iotJobConfiguration.jobExecutionsRolloutConfig"
        ".maximumPerMinute: 0: expected a whole number from 1 to 1000\n")
    refused = deploy_cli("--iot-job-configuration", "{}", "--timeout", "5", "--abort",
                         "FAILED:10:1")
    assert refused.returncode == 1
    assert "--iot-job-configuration and --abort, --timeout: give the JSON or the flags, " \
        "not both" in refused.stderr


def test_fleet_deploy_rolls_out_by_the_job_configuration_file(fleet: Fleet,
                                                              tmp_path: Path) -> None:
    things = ["dev-a", "dev-b", "dev-c"]

    async def prepare() -> None:
        await fleet.publish({"test.Runtime": "1.0.0"})
        async with fleet.registry() as registry:
            await registry.add_to_group("line", things)

    anyio.run(prepare)
    job = {"jobExecutionsRolloutConfig": {"maximumPerMinute": 1},
           "abortConfig": {"criteriaList": [CRITERION]},
           "timeoutConfig": {"inProgressTimeoutInMinutes": 10}}
    cert, key = fleet.pki.controller()
    server = fleet.registry_server
    # No device runs: one is notified at once, the next would be a minute later; the
    # rollout is followed for 2 s.
    done = subprocess.run(
        [sys.executable, "-m", "actors", "fleet", "deploy", "--registry", fleet.url,
         "--broker", f"mqtts://127.0.0.1:{fleet.broker.port}", "--ca", str(fleet.pki.ca),
         "--cert", str(cert), "--key", str(key), "--target", "thinggroup/line",
         "--component", "test.Runtime=1.0.0", "--wait", "2", "--iot-job-configuration",
         "@" + str(write(tmp_path / "job.json", json.dumps(job)))],
        env={"PATH": "/usr/bin:/bin", **server.environment(server.admin)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    deployment_id = done.stdout.split()[1]
    assert done.stdout.splitlines()[-1] == \
        f"deployment {deployment_id}: NOT_NOTIFIED 2, QUEUED 1"

    async def document() -> Any:
        async with fleet.registry() as registry:
            return await registry.document(deployment_id)

    written = anyio.run(document)[JOB]
    assert iot_job_configuration(written) == iot_job_configuration(job)
    assert written["timeoutConfig"] == {"inProgressTimeoutInMinutes": 10,
                                        "inProgressTimeoutInSeconds": 600.0}
