"""Components run as a non-root user when the runtime runs as root (Greengrass's
ggc_user:ggc_group), RequiresPrivilege steps as root; they cannot read the
runtime's own files."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.component import DEFAULT_POSIX_USER, RunWith, State
from actors.component._users import create_default_user
from actors.deploy import DeploymentRequest, DetailedStatus
from actors.nucleus import Nucleus

from .test_lifecycle import recipe

pytestmark = [pytest.mark.anyio,
              pytest.mark.skipif(os.geteuid() != 0, reason="component users need root")]


@pytest.fixture
def open_root() -> Iterator[Path]:
    # Outside pytest's own 0700 temporary folders, which no other user may enter.
    folder = Path(tempfile.mkdtemp(prefix="edge-actors-users-"))
    folder.chmod(0o755)
    create_default_user(DEFAULT_POSIX_USER)  # the test set-up makes ggc_user when missing
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_components_run_as_ggc_user_and_privileged_steps_as_root(
        open_root: Path) -> None:
    recipes, root = open_root / "recipes", open_root / "root"
    earlier = root / "work" / "test.Who" / "earlier" / "state.txt"  # written as root before
    earlier.parent.mkdir(parents=True)
    earlier.write_text("old")
    recipe(recipes, "test.Who", lifecycle="""\
        Install:
          Script: echo "install $(id -un)"
          RequiresPrivilege: true
        Startup: |
          echo "startup $(id -un):$(id -gn)"
          cat ../../cli.token > /dev/null 2>&1 && echo "read the CLI token"
          cat ../../state.json > /dev/null 2>&1 && echo "read the state"
          cat ../test.Other/secret > /dev/null 2>&1 && echo "read another component's work"
          echo mine > own-file
          echo new > earlier/state.txt || echo "read cannot update its earlier files"
    """)
    recipe(recipes, "test.Other", lifecycle="""\
        Startup: echo secret > secret
    """)
    lines: list[str] = []
    nucleus = Nucleus(root, run_with=RunWith(posix_user=DEFAULT_POSIX_USER))
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Other": "1.0.0", "test.Who": "1.0.0"},
            # Components of one user share what it may read; another user separates.
            run_with={"test.Other": {"posixUser": "nobody"}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        assert nucleus.status["test.Who"].state is State.RUNNING
        work = root / "work" / "test.Who"
        info = work.stat()
        assert pwd.getpwuid(info.st_uid).pw_name == "ggc_user"
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert pwd.getpwuid((work / "own-file").stat().st_uid).pw_name == "ggc_user"
        assert stat.S_IMODE((root / "cli.token").stat().st_mode) == 0o600
    assert "install root" in lines
    assert "startup ggc_user:ggc_group" in lines
    assert not [line for line in lines if line.startswith("read ")], lines


async def test_a_components_posix_user_comes_from_the_deployment(open_root: Path) -> None:
    recipes, root = open_root / "recipes", open_root / "root"
    recipe(recipes, "test.Nobody", lifecycle="""\
        Startup: echo "as $(id -un)"
    """)
    lines: list[str] = []
    nucleus = Nucleus(root, run_with=RunWith(posix_user=DEFAULT_POSIX_USER))
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Nobody": "1.0.0"},
            run_with={"test.Nobody": {"posixUser": "nobody"}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
    assert lines == ["as nobody"]


def test_the_cli_takes_the_default_user_runwith_and_system_limits(open_root: Path) -> None:
    recipes, root = open_root / "recipes", open_root / "root"
    for name in ("test.Default", "test.Other"):
        recipe(recipes, name, lifecycle="""\
            Run: echo "as $(id -un)"
        """)
    done = subprocess.run(
        [sys.executable, "-m", "actors", "run", "--root", str(root), "--recipeDir", str(recipes),
         "--merge", "test.Default=1.0.0", "--merge", "test.Other=1.0.0",
         "--component-default-user", "ggc_user:ggc_group",
         "--runWith", "test.Other:posixUser=nobody",
         "--systemLimits", '{"test.Other": {"memory": 65536, "cpus": 0.5}}',
         "--exit-when-done", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[test.Default] as ggc_user" in done.stdout
    assert "[test.Other] as nobody" in done.stdout
    saved = json.loads((root / "run-with.json").read_text())
    assert saved["test.Other"] == {"posixUser": "nobody",
                                   "systemResourceLimits": {"memory": 65536, "cpus": 0.5}}


async def test_a_root_other_users_cannot_reach_is_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    async with Nucleus(closed / "root", run_with=RunWith(posix_user=DEFAULT_POSIX_USER)):
        pass
    # (pytest's own temporary folder, above it, is the first one closed)
    assert "is closed to other users (mode 700): components running as ggc_user:ggc_group " \
        "cannot reach their work folders" in caplog.text


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no system python3")
async def test_a_component_user_may_connect_to_the_ipc_socket(open_root: Path) -> None:
    # The socket is root's (0600) until components run as other users; each
    # connection then authenticates with its component's token (tests/ipc).
    # (/usr/bin/python3: the runtime's own interpreter may be under /root.)
    recipes, root = open_root / "recipes", open_root / "root"
    recipe(recipes, "test.Connect", lifecycle="""\
        Run: >-
          /usr/bin/python3 -c "import os, socket; s = socket.socket(socket.AF_UNIX);
          s.connect(os.environ['AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT']);
          print('connected as', os.getuid())"
    """)
    lines: list[str] = []
    nucleus = Nucleus(root, run_with=RunWith(posix_user=DEFAULT_POSIX_USER))
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Connect": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.Connect"], [State.FINISHED, State.BROKEN], timeout=30)
    assert lines == [f"connected as {pwd.getpwnam('ggc_user').pw_uid}"], lines


def test_an_unknown_posix_user_is_named_and_nothing_is_deployed(open_root: Path) -> None:
    recipes, root = open_root / "recipes", open_root / "root"
    recipe(recipes, "test.X", lifecycle="""\
        Run: echo ran
    """)
    done = subprocess.run(
        [sys.executable, "-m", "actors", "run", "--root", str(root), "--recipeDir", str(recipes),
         "--merge", "test.X=1.0.0", "--runWith", "test.X:posixUser=no_such_user_here",
         "--exit-when-done", "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "component test.X: runWith.posixUser: user 'no_such_user_here' does not exist; " \
        "create it" in done.stderr
    assert "Traceback" not in done.stderr and "ran" not in done.stdout


async def test_the_getting_started_hello_world_runs_as_ggc_user(open_root: Path) -> None:
    # Its artifact keeps the default Permission (Read: OWNER): the owner is the
    # user that runs the component, as Greengrass means it.
    recipes, artifacts, root = open_root / "recipes", open_root / "artifacts", open_root / "root"
    folder = artifacts / "com.example.Hello" / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "hello.py").write_text("import getpass\nprint('Hello from', getpass.getuser())\n")
    recipes.mkdir()
    (recipes / "hello.yaml").write_text(
        'RecipeFormatVersion: "2020-01-25"\nComponentName: com.example.Hello\n'
        'ComponentVersion: "1.0.0"\nManifests:\n  - Platform:\n      os: linux\n'
        '    Lifecycle:\n      Run: python3 -u {artifacts:path}/hello.py\n'
        '    Artifacts:\n      - URI: s3://bucket/com.example.Hello/1.0.0/hello.py\n')
    lines: list[str] = []
    nucleus = Nucleus(root, run_with=RunWith(posix_user=DEFAULT_POSIX_USER))
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, artifact_dir=artifacts, merge={"com.example.Hello": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["com.example.Hello"], [State.FINISHED, State.BROKEN],
                                  timeout=60)
        assert nucleus.status["com.example.Hello"].state is State.FINISHED, lines
    assert "Hello from ggc_user" in lines
