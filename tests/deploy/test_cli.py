"""The edge-actors CLI against a real runtime process: deployment create/status/list/cancel,
component list/details/restart/stop, logs get, recipe check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..component.test_lifecycle import recipe

CLI = [sys.executable, "-m", "actors"]


def cli(*args: str, root: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--root", str(root)], capture_output=True, text=True,
                          timeout=60, check=check)


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    proc = subprocess.Popen([*CLI, "run", "--root", str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (root / "cli.token").exists() and (root / "ipc.socket").exists())
    yield root
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output


def test_deploy_inspect_restart_and_stop_through_the_cli(runtime: Path, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Svc", config="Greeting: hello\n", lifecycle="""\
        Startup: echo "started {configuration:/Greeting}"
    """)
    created = cli("deployment", "create", "--recipeDir", str(recipes), "--merge",
                  "test.Svc=1.0.0", "--update-config",
                  '{"test.Svc": {"MERGE": {"Greeting": "bonjour"}}}', root=runtime)
    deployment_id = created.stdout.split("Deployment Id: ")[1].strip()

    def succeeded() -> bool:
        status = cli("deployment", "status", "-i", deployment_id, root=runtime, check=False)
        return status.returncode == 0 and '"SUCCEEDED"' in status.stdout

    wait_for(succeeded)
    # greengrass-cli's `deployment cancel`: too late for a finished one; an unknown id.
    assert cli("deployment", "cancel", "-i", deployment_id, root=runtime).stdout.strip() == (
        "Cancellation request is not processed because deployment is already finished")
    unknown = "6f1c2a1e-0000-4000-8000-000000000000"
    refused = cli("deployment", "cancel", "-i", unknown, root=runtime, check=False)
    assert refused.returncode != 0
    assert f"Cannot find the deployment id provided {unknown}" in refused.stderr
    # The runtime's view, states included (its host's records).
    assert "test.Svc  1.0.0  RUNNING" in cli("component", "list", root=runtime).stdout
    details = json.loads(cli("component", "details", "-n", "test.Svc", root=runtime).stdout)
    assert details["configuration"]["Greeting"] == "bonjour"
    assert details["state"] == "RUNNING"
    assert "restart test.Svc: SUCCEEDED" in cli("component", "restart", "-n", "test.Svc",
                                                root=runtime).stdout
    assert "stop test.Svc: SUCCEEDED" in cli("component", "stop", "-n", "test.Svc",
                                             root=runtime).stdout
    log = cli("logs", "get", "-n", "test.Svc", "--filter", "started", root=runtime).stdout
    assert log.count("started bonjour") == 2  # the deployment, then the restart
    assert deployment_id in cli("deployment", "list", root=runtime).stdout
    # The same log over IPC, as a CLI client asks for it.
    from actors.cli import _remote

    answer = _remote(runtime, "GetComponentLogs", {"componentName": "test.Svc", "lines": 5})
    assert answer["logs"][-1]["message"] == "started bonjour"


def test_cli_errors_name_what_to_do(tmp_path: Path) -> None:
    missing = cli("deployment", "create", "--merge", "x=1.0.0", root=tmp_path / "none",
                  check=False)
    assert missing.returncode != 0
    assert "no runtime is running on" in missing.stderr and "edge-actors run" in missing.stderr
    good = recipe(tmp_path / "r", "test.Ok")
    bad = tmp_path / "r" / "bad.yaml"
    bad.write_text('RecipeFormatVersion: "2020-01-25"\nComponentName: x\nComponentVersion: 1\n')
    checked = subprocess.run([*CLI, "recipe", "check", str(good), str(bad)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 1
    assert f"{good}: ok (test.Ok 1.0.0, for linux/" in checked.stdout
    assert f"{bad}: ComponentVersion: 1 is not a semantic version" in checked.stderr


def test_the_cli_token_is_private(runtime: Path) -> None:
    assert (os.stat(runtime / "cli.token").st_mode & 0o777) == 0o600


def test_a_signal_during_start_up_stops_the_runtime_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = subprocess.Popen([*CLI, "run", "--root", str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (root / "ipc.socket").exists())  # started, perhaps not up yet
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "Traceback" not in output
