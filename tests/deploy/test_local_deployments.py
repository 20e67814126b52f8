"""Local deployments as the Greengrass CLI does them: the --artifactDir folder of a
version is its artifacts (the getting-started HelloWorld lists none), a recipe
folder with several versions, --remove, and a re-deployment that copies a changed
artifact folder again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actors.component import State
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

pytestmark = pytest.mark.anyio

# The developer guide's getting-started component, as the tutorial writes it.
HELLO_RECIPE = """\
---
RecipeFormatVersion: '2020-01-25'
ComponentName: com.example.HelloWorld
ComponentVersion: '{version}'
ComponentDescription: My first AWS IoT Greengrass component.
ComponentPublisher: Amazon
ComponentConfiguration:
  DefaultConfiguration:
    Message: world
Manifests:
  - Platform:
      os: linux
    Lifecycle:
      Run: |
        python3 -u {{artifacts:path}}/hello_world.py "{{configuration:/Message}}"
"""
HELLO_SCRIPT = """\
import sys
from greetings.words import greeting

message = f"{greeting}, {sys.argv[1]}!"
print(message)
"""


def hello_world(base: Path, version: str = "1.0.0", greeting: str = "Hello") -> tuple[Path, Path]:
    """The tutorial's layout: ~/greengrassv2/{recipes,artifacts/<name>/<version>/}."""
    recipes, artifacts = base / "recipes", base / "artifacts"
    recipes.mkdir(parents=True, exist_ok=True)
    (recipes / f"com.example.HelloWorld-{version}.yaml").write_text(
        HELLO_RECIPE.format(version=version))
    folder = artifacts / "com.example.HelloWorld" / version
    (folder / "greetings").mkdir(parents=True, exist_ok=True)
    (folder / "hello_world.py").write_text(HELLO_SCRIPT)
    (folder / "greetings" / "__init__.py").write_text("")
    (folder / "greetings" / "words.py").write_text(f"greeting = {greeting!r}\n")
    return recipes, artifacts


def installed(root: Path, version: str = "1.0.0") -> Path:
    return root / "packages" / "artifacts" / "com.example.HelloWorld" / version


def test_the_getting_started_hello_world_deploys_and_prints(tmp_path: Path) -> None:
    recipes, artifacts = hello_world(tmp_path / "greengrassv2")
    run = subprocess.run(
        [sys.executable, "-m", "actors", "run", "--root", str(tmp_path / "root"),
         "-r", str(recipes), "-a", str(artifacts), "-m", "com.example.HelloWorld=1.0.0",
         "--exit-when-done", "--timeout", "60"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[com.example.HelloWorld] Hello, world!" in run.stdout
    assert "[state] com.example.HelloWorld: FINISHED" in run.stdout
    assert (installed(tmp_path / "root") / "greetings" / "words.py").is_file()


async def test_versions_from_one_folder_remove_and_copying_again(tmp_path: Path) -> None:
    base = tmp_path / "greengrassv2"
    recipes, artifacts = hello_world(base, "1.0.0", "Hello")
    hello_world(base, "1.1.0", "Bonjour")
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    name = "com.example.HelloWorld"
    async with nucleus:
        for version in ("1.0.0", "1.1.0"):  # two versions side by side in one recipe folder
            record = await nucleus.deploy(DeploymentRequest(
                recipe_dir=recipes, artifact_dir=artifacts, merge={name: version}))
            assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
            await nucleus.wait_states([name], [State.FINISHED], timeout=30)
        assert lines == ["Hello, world!", "Bonjour, world!"]
        # The same version again, its artifact folder changed: copied again.
        (artifacts / name / "1.1.0" / "greetings" / "words.py").write_text("greeting = 'Hi'\n")
        (artifacts / name / "1.1.0" / "extra.txt").write_text("new file\n")
        record = await nucleus.deploy(DeploymentRequest(artifact_dir=artifacts,
                                                        merge={name: "1.1.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        folder = installed(tmp_path / "root", "1.1.0")
        assert (folder / "greetings" / "words.py").read_text() == "greeting = 'Hi'\n"
        assert (folder / "extra.txt").read_text() == "new file\n"
        assert not os.access(folder / "extra.txt", os.W_OK) or os.geteuid() == 0
        assert not installed(tmp_path / "root", "1.0.0").exists()  # collected
        removed = await nucleus.deploy(DeploymentRequest(remove=[name]))
        assert removed.detailed_status is DetailedStatus.SUCCESSFUL, removed.cause
        assert name not in nucleus.status
    assert not installed(tmp_path / "root", "1.1.0").exists()


async def test_greengrass_uris_come_from_the_artifact_folder(tmp_path: Path) -> None:
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    recipes.mkdir()
    (recipes / "test.Zipped-1.0.0.yaml").write_text(textwrap.dedent("""\
        RecipeFormatVersion: '2020-01-25'
        ComponentName: test.Zipped
        ComponentVersion: '1.0.0'
        Manifests:
          - Lifecycle:
              Startup: cat {artifacts:path}/data.txt
            Artifacts:
              - URI: greengrass:data.txt
                Digest: PLACEHOLDER
              - URI: docker:busybox:1.36
        """))
    (artifacts / "test.Zipped" / "1.0.0").mkdir(parents=True)
    (artifacts / "test.Zipped" / "1.0.0" / "data.txt").write_text("from the folder\n")
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, artifact_dir=artifacts, merge={"test.Zipped": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        missing = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Zipped": "1.0.0"}))
    assert lines == ["from the folder"]
    assert "greengrass: artifacts are uploaded with the component to the cloud; in a local " \
        "deployment, give --artifactDir with the file at <artifactDir>/test.Zipped/1.0.0/" \
        "data.txt" in missing.cause


async def test_recipes_brought_in_the_request_are_stored_and_survive_a_restart(
        tmp_path: Path) -> None:
    """A request may carry its recipes as documents (a fleet deployment's document does):
    they are taken as a recipe folder's files would be, and stored, so the runtime
    restarts its components without them."""
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": "com.example.Doc",
              "ComponentVersion": "1.0.0",
              "ComponentConfiguration": {"DefaultConfiguration": {"Message": "from a document"}},
              "Manifests": [{"Platform": {"os": "linux"},
                             "Lifecycle": {"Run": "echo '{configuration:/Message}'"}}]}
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipes=[recipe],
                                                        merge={"com.example.Doc": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["com.example.Doc"], [State.FINISHED], timeout=30)
    assert lines == ["from a document"]
    stored = list((tmp_path / "root").rglob("com.example.Doc@1.0.0.json"))
    assert len(stored) == 1
    restarted = Nucleus(tmp_path / "root")
    restarted.on_output(lambda name, line: lines.append(line))
    async with restarted:
        await restarted.wait_states(["com.example.Doc"], [State.FINISHED], timeout=30)
    assert lines == ["from a document", "from a document"]
