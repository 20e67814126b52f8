"""A full disk fails a deployment, not the runtime: the deployment ends FAILED with the
errno in words and the file it concerns, what runs keeps running (same process), and the
next deployment succeeds once there is room again.

The runtime's root lives on a small tmpfs mounted in a private mount namespace
(``unshare``), filled to the last byte, so the disk really is full."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.artifacts.test_disk_full import _namespace

SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import anyio
    from actors.component import State
    from actors.deploy import DeploymentRequest
    from actors.nucleus import Nucleus

    root, recipes = Path(sys.argv[1]), Path(sys.argv[2])
    NAME = "com.example.Keep"

    def fill(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (65536, 1):  # to the last byte
                try:
                    while os.write(fd, b"x" * size):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)

    def report(step, record, nucleus):
        entry = nucleus.status.get(NAME)
        print(json.dumps({"step": step, "status": str(record.detailed_status),
                          "cause": record.cause,
                          "version": entry.version if entry else None,
                          "state": str(entry.state) if entry else None}), flush=True)

    async def main():
        async with Nucleus(root / "runtime", containment="process-group") as nucleus:
            record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                            merge={NAME: "1.0.0"}))
            await nucleus.wait_states([NAME], [State.RUNNING], timeout=30)
            report("first", record, nucleus)
            fill(root / "filler")
            record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                            merge={NAME: "2.0.0"}))
            report("full", record, nucleus)
            os.unlink(root / "filler")
            record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                            merge={NAME: "2.0.0"}))
            await nucleus.wait_states([NAME], [State.RUNNING], timeout=30)
            report("room again", record, nucleus)

    anyio.run(main)
""")


def _recipe(folder: Path, version: str, pids: Path) -> None:
    (folder / f"Keep-{version}.yaml").write_text(textwrap.dedent(f"""\
        RecipeFormatVersion: "2020-01-25"
        ComponentName: com.example.Keep
        ComponentVersion: "{version}"
        Manifests:
          - Lifecycle:
              Run: echo "{version} $$" >> {pids}; exec sleep 600
        """))


def test_a_full_disk_fails_the_deployment_and_keeps_what_runs(tmp_path: Path) -> None:
    prefix = _namespace(tmp_path / "probe")
    disk, recipes, pids = tmp_path / "disk", tmp_path / "recipes", tmp_path / "pids"
    disk.mkdir()
    recipes.mkdir()
    for version in ("1.0.0", "2.0.0"):
        _recipe(recipes, version, pids)
    script = tmp_path / "runtime.py"
    script.write_text(SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    shell = (f"mount -t tmpfs -o size=4m none {disk} && cd {repo} && "
             f"exec {sys.executable} {script} {disk} {recipes}")
    done = subprocess.run([*prefix, "sh", "-c", shell], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = {line["step"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert steps["first"]["status"] == "SUCCESSFUL"
    full = steps["full"]
    assert full["status"].startswith("FAILED"), full
    assert "No space left on device (ENOSPC)" in full["cause"], full
    assert str(disk) in full["cause"], full  # the file it could not write
    assert (full["version"], full["state"]) == ("1.0.0", "RUNNING")
    again = steps["room again"]
    assert again["status"] == "SUCCESSFUL", again
    assert (again["version"], again["state"]) == ("2.0.0", "RUNNING")
    # 1.0.0's process ran untouched through the failed deployment: started once.
    started = [line.split()[0] for line in pids.read_text().splitlines()]
    assert started == ["1.0.0", "2.0.0"], started
