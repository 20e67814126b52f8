"""A component's environment is Greengrass's, not the runtime's: the system's PATH
(python3 and pip3 are not the runtime's), HOME its work folder, the documented
variables; so a component's pip install lands in its own environment."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import anyio
import pytest

from actors.component import State
from actors.component._environment import component_path
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from .test_lifecycle import recipe

pytestmark = pytest.mark.anyio

PROBE = """\
import json, os, shutil, sys
keys = ["PATH", "HOME", "VIRTUAL_ENV", "SVCUID", "AWS_IOT_THING_NAME", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "GG_ROOT_CA_PATH",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]
print(json.dumps({"prefix": sys.prefix, "pip3": shutil.which("pip3"),
                  **{k: os.environ.get(k) for k in keys}}))
"""


async def test_a_component_gets_greengrass_s_environment(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    recipe(tmp_path / "recipes", "test.Env", lifecycle=f"""\
        Run: python3 {tmp_path / "probe.py"}
    """)
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root", thing_name="device-7")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=tmp_path / "recipes",
                                                        merge={"test.Env": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.Env"], [State.FINISHED], timeout=30)
    seen = json.loads(lines[-1])
    runtime_bin = os.path.dirname(sys.executable)
    assert seen["prefix"] != sys.prefix  # python3 is not the runtime's interpreter
    assert runtime_bin not in seen["PATH"].split(os.pathsep)
    assert seen["pip3"] is None or not seen["pip3"].startswith(sys.prefix)
    assert seen["VIRTUAL_ENV"] is None
    assert seen["HOME"] == str(tmp_path / "root" / "work" / "test.Env")
    assert seen["AWS_IOT_THING_NAME"] == "device-7"
    assert seen["SVCUID"] and seen["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == seen["SVCUID"]
    assert seen["AWS_REGION"] and seen["AWS_DEFAULT_REGION"]
    assert seen["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == \
        str(tmp_path / "root" / "ipc.socket")
    assert seen["GG_ROOT_CA_PATH"] == ""


def wheel(folder: Path) -> Path:
    """A real (tiny, pure-Python) wheel, so pip installs with nothing downloaded."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "edgeprobe-1.0.0-py3-none-any.whl"
    info = "edgeprobe-1.0.0.dist-info"
    files = {"edgeprobe/__init__.py": "WHERE = 'component'\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: edgeprobe\nVersion: 1.0.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def listed(python: Path | str) -> set[str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json",
                          "--disable-pip-version-check"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return {p["name"].lower() for p in json.loads(out)}


# One loop only (uvloop where it is installed): making a virtual environment and
# installing into it takes ~20 s.
_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": _UVLOOP}),
                                                        id="uvloop" if _UVLOOP else "asyncio")])
async def test_a_component_s_pip_install_lands_in_its_own_environment(tmp_path: Path) -> None:
    system_python = shutil.which("python3", path=component_path(os.environ))
    probe = await anyio.run_process([system_python or "python3", "-c", "import ensurepip, venv"],
                                    check=False)
    if system_python is None or probe.returncode != 0:
        pytest.skip("the system's python3 cannot make virtual environments here")
    artifacts = tmp_path / "artifacts"
    wheel(artifacts / "test.Pip" / "1.0.0")
    # The developer guide's pattern, in a component-level virtual environment (as
    # Debian 12 and later require); --no-index: the wheel is the artifact.
    recipe(tmp_path / "recipes", "test.Pip", lifecycle="""\
        Install:
          Script: >-
            [ -d venv ] || python3 -m venv venv && . venv/bin/activate &&
            pip3 install --quiet --no-index --find-links {artifacts:path} edgeprobe
          Timeout: 300
        Run: . venv/bin/activate && python3 -c "import edgeprobe; print(edgeprobe.WHERE)"
    """)
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=tmp_path / "recipes", artifact_dir=artifacts, merge={"test.Pip": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.Pip"], [State.FINISHED], timeout=60)
    assert lines[-1] == "component"
    venv = tmp_path / "root" / "work" / "test.Pip" / "venv"
    assert "edgeprobe" in listed(venv / "bin" / "python")
    assert "edgeprobe" not in listed(sys.executable)  # the runtime's environment
    assert not (venv / "pyvenv.cfg").read_text().count(sys.prefix)  # not made from ours
