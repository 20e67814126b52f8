"""The fleet from the command line: a device started with `edge-actors run --thing --broker
--registry` (its own process, its own certificate, read-only S3 credentials), `fleet deploy`,
`fleet status`, `fleet devices`, and a device killed with kill -9 mid-deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio

from .conftest import write
from .fleet import Fleet

SLOW_APP = """\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.App
ComponentVersion: '1.1.0'
ComponentDependencies:
  test.Runtime: {VersionRequirement: '^1.0.0'}
Manifests:
  - Platform: {os: linux}
    Lifecycle:
      Install: sleep 60
      Run: exec sleep 3600
"""


def env(fleet: Fleet, device: bool) -> dict[str, str]:
    server = fleet.registry_server
    who = server.device if device else server.admin
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
            **server.environment(who)}


def controller_flags(fleet: Fleet) -> list[str]:
    cert, key = fleet.pki.controller()
    return ["--registry", fleet.url, "--broker", f"mqtts://127.0.0.1:{fleet.broker.port}",
            "--ca", str(fleet.pki.ca), "--cert", str(cert), "--key", str(key)]


def cli(fleet: Fleet, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors", *args], env=env(fleet, False),
                          capture_output=True, text=True, timeout=timeout)


def start_device(fleet: Fleet, thing: str, root: Path) -> subprocess.Popen[str]:
    cert, key = fleet.pki.thing(thing)
    log = (root.parent / f"{thing}.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "actors", "run", "--root", str(root), "--thing", thing,
         "--broker", f"mqtts://127.0.0.1:{fleet.broker.port}", "--registry", fleet.url,
         "--mqtt-ca", str(fleet.pki.ca), "--mqtt-cert", str(cert), "--mqtt-key", str(key)],
        env=env(fleet, True), stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_device_process_deploy_status_devices_and_kill_9(fleet: Fleet, tmp_path: Path) -> None:
    anyio.run(fleet.publish, {"test.Runtime": "1.0.0", "test.Model": "1.0.0",
                              "test.App": "1.0.0"})
    published = cli(fleet, "component", "publish", "--recipe",
                    str(write(tmp_path / "slow.yaml", SLOW_APP)), "--registry", fleet.url)
    assert published.returncode == 0, published.stderr
    root = tmp_path / "dev-a"
    root.mkdir()
    device = start_device(fleet, "dev-a", root)
    try:
        deployed = cli(fleet, "fleet", "deploy", "--target", "thing/dev-a", "--component",
                       "test.App=1.0.0", "--configuration-update",
                       '{"test.App": {"MERGE": {"Greeting": "bonjour"}}}',
                       *controller_flags(fleet))
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "dev-a: SUCCEEDED" in deployed.stdout
        deployment_id = deployed.stdout.split()[1]
        runs = (root / "work" / "test.App" / "runs.txt").read_text()
        assert runs == "1.0.0 bonjour\n"

        status = cli(fleet, "fleet", "status", deployment_id, *controller_flags(fleet))
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines() == ["dev-a  SUCCEEDED    SUCCESSFUL",
                                              "summary: SUCCEEDED 1"]
        listed = cli(fleet, "fleet", "devices", *controller_flags(fleet)[2:])
        assert "dev-a  online  last: " + deployment_id + " SUCCEEDED" in listed.stdout
        assert "test.App 1.0.0 RUNNING" in listed.stdout

        # kill -9 while the next version installs: on restart the runtime rolls back and
        # the device reports that, and the rollout (still following) ends FAILED.
        rollout = subprocess.Popen(
            [sys.executable, "-m", "actors", "fleet", "deploy", "--target", "thing/dev-a",
             "--component", "test.App=1.1.0", "--wait", "120", *controller_flags(fleet)],
            env=env(fleet, False), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: (root / "deployments" / "current.json").exists())
        device.send_signal(signal.SIGKILL)
        device.wait()
        device = start_device(fleet, "dev-a", root)
        out, _ = rollout.communicate(timeout=120)
        assert rollout.returncode == 1, out
        assert "dev-a: FAILED (the runtime stopped during the deployment; the previous " \
            "state was restored)" in out
        wait_for(lambda: "1.0.0 bonjour\n1.0.0 bonjour\n" in
                 (root / "work" / "test.App" / "runs.txt").read_text())
    finally:
        device.send_signal(signal.SIGTERM)
        try:
            device.wait(30)
        except subprocess.TimeoutExpired:
            device.kill()
            device.wait()
