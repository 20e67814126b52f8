"""A component's processes are contained: nothing it starts outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from actors.component import (
    ComponentActor,
    ComponentError,
    ComponentPaths,
    RunWith,
    RunWithError,
    State,
)
from actors.component._processes import Containment, containment_for
from actors.deploy import (
    DeploymentRequest,
    DetailedStatus,
    RestartComponent,
    StopComponent,
)
from actors.nucleus import Nucleus
from actors.recipe import load_recipe

from .test_lifecycle import recipe

pytestmark = pytest.mark.anyio


def _modes() -> list[str]:
    modes = []
    for mode in ("cgroup2", "cgroup1"):
        try:
            Containment(Path("/nonexistent-probe"), "probe", mode)  # type: ignore[arg-type]
            modes.append(mode)
        except ValueError:
            pass
    return [*modes, "process-group"]


MODES = _modes()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pids(folder: Path, *names: str) -> list[int]:
    return [int((folder / name).read_text()) for name in names]


def written(path: Path) -> bool:
    return path.exists() and bool(path.read_text().strip())


def environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


async def wait_for(path: Path, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not written(path):
            await anyio.sleep(0.02)


async def test_a_startup_step_that_starts_a_daemon_reaches_running(tmp_path: Path) -> None:
    # The Greengrass pattern: a startup step starts a daemon in the background,
    # its output redirected, and exits. Under uvloop the step's process used to
    # inherit extra copies of its own stdout/stderr pipes, so the runtime never
    # saw end of file and the step ran into its Timeout.
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Daemon", lifecycle="""\
        Startup:
          Script: "sleep 300 > /dev/null 2>&1 & echo $! > daemon.pid; echo started"
          Timeout: 5
    """)
    lines: list[str] = []
    nucleus = Nucleus(tmp_path / "root")
    nucleus.on_output(lambda name, line: lines.append(line))
    async with nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Daemon": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        assert nucleus.status["test.Daemon"].state is State.RUNNING
        [daemon] = pids(tmp_path / "root" / "work" / "test.Daemon", "daemon.pid")
        assert alive(daemon)
    assert lines == ["started"]
    assert not alive(daemon)  # and it went with the runtime


ESCAPERS = """\
    Startup:
      Script: |
        setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' > /dev/null 2>&1 &
        env -i sh -c 'echo $$ > envi.pid; exec sleep 300' > /dev/null 2>&1 &
        sleep 300 > /dev/null 2>&1 & echo $! > daemon.pid
"""


@pytest.mark.parametrize("mode", MODES)
async def test_nothing_a_component_started_survives_its_removal_or_the_runtime(
        tmp_path: Path, mode: str) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Escapes", lifecycle=ESCAPERS)
    # A run step that exits 0 (FINISHED) and leaves a background child behind.
    recipe(recipes, "test.Leaves", lifecycle="""\
        Run: "sleep 300 > /dev/null 2>&1 & echo $! > child.pid"
    """)
    root = tmp_path / "root"
    names = ["setsid.pid", "envi.pid", "daemon.pid"]
    async with Nucleus(root, containment=mode) as nucleus:
        assert nucleus.processes.kind == mode
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Escapes": "1.0.0", "test.Leaves": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        await nucleus.wait_states(["test.Leaves"], [State.FINISHED], timeout=10)
        work = root / "work"
        for name in names:
            await wait_for(work / "test.Escapes" / name)
        await wait_for(work / "test.Leaves" / "child.pid")
        escapes = pids(work / "test.Escapes", *names)
        [child] = pids(work / "test.Leaves", "child.pid")
        assert all(alive(pid) for pid in [*escapes, child])
        # Removed by a deployment: everything it started is gone.
        record = await nucleus.deploy(DeploymentRequest(remove=["test.Escapes"]))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        # (The fallback finds the setsid one by its environment, re-parented to
        # the runtime, and the env -i one by its process group.)
        assert [pid for pid in escapes if alive(pid)] == []
        assert alive(child)
        # The same with a StopComponent of the FINISHED component.
        assert await nucleus.control(StopComponent("test.Leaves")) == "SUCCEEDED"
        assert not alive(child)
    for pid in [*escapes, child]:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
async def test_the_runtime_stop_leaves_nothing_of_its_components(
        tmp_path: Path, mode: str) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Escapes", lifecycle=ESCAPERS)
    root = tmp_path / "root"
    names = ["setsid.pid", "envi.pid", "daemon.pid"]
    async with Nucleus(root, containment=mode) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                               merge={"test.Escapes": "1.0.0"}))
        for name in names:
            await wait_for(root / "work" / "test.Escapes" / name)
        escapes = pids(root / "work" / "test.Escapes", *names)
    assert not any(alive(pid) for pid in escapes)


RUNTIME = textwrap.dedent("""
    import sys, anyio
    from pathlib import Path
    from actors.deploy import DeploymentRequest
    from actors.nucleus import Nucleus

    async def main(root, recipes):
        async with Nucleus(Path(root)) as nucleus:
            await nucleus.deploy(DeploymentRequest(recipe_dir=Path(recipes),
                                                   merge={"test.Escapes": "1.0.0"}))
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(main, *sys.argv[1:])
""")


@pytest.mark.skipif(MODES == ["process-group"], reason="no cgroups the runtime may create here")
async def test_after_kill_9_the_next_start_kills_even_an_env_i_daemon(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Escapes", lifecycle=ESCAPERS)
    # A plain Popen: the test drives a process it kills, nothing async about it.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", RUNTIME, str(root), str(recipes)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"ready")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    names = ["setsid.pid", "envi.pid", "daemon.pid"]
    escapes = pids(root / "work" / "test.Escapes", *names)
    assert all(alive(pid) for pid in escapes)
    assert b"EDGE_ACTORS" not in environ(escapes[1])  # nothing in its environment gives it away
    try:
        async with Nucleus(root):
            # Killed by the start's sweep, before anything of this runtime started.
            assert not any(alive(pid) for pid in escapes)
    finally:
        for pid in escapes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_a_stop_with_an_unwritable_log_still_ends_the_processes(tmp_path: Path) -> None:
    # A full disk (here: the log folder cannot be made) used to stop on_stop
    # before the processes were ended, and StopComponent answered SUCCEEDED.
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Long", lifecycle="""\
        Run: "echo $$ > run.pid; echo running; exec sleep 300"
    """)
    async with Nucleus(root) as nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Long": "1.0.0"}))
        await wait_for(root / "work" / "test.Long" / "run.pid")
        [pid] = pids(root / "work" / "test.Long", "run.pid")
        logs = root / "logs"
        if logs.exists():
            for item in logs.iterdir():
                item.unlink()
            logs.rmdir()
        logs.write_text("not a folder")
        assert await nucleus.control(StopComponent("test.Long")) == "SUCCEEDED"
        assert not alive(pid)


@pytest.mark.skipif(MODES == ["process-group"], reason="no cgroups the runtime may create here")
async def test_resource_limits_and_pause_resume_use_the_components_cgroup(
        tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Limited", lifecycle="""\
        Run: "while :; do date +%s%N > tick; sleep 0.02; done"
    """)
    async with Nucleus(root) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(
            recipe_dir=recipes, merge={"test.Limited": "1.0.0"},
            run_with={"test.Limited": {"systemResourceLimits": {"memory": 65536, "cpus": 0.5}}}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
        processes = nucleus.processes.components["test.Limited"]
        groups = {folder.parent.parent.parent.name + "/" + folder.name: folder
                  for folder in processes.groups}
        memory = [f for f in processes.groups if (f / "memory.limit_in_bytes").exists()
                  or (f / "memory.max").exists()]
        assert memory, groups
        limit = memory[0] / ("memory.limit_in_bytes" if (memory[0] / "memory.limit_in_bytes")
                             .exists() else "memory.max")
        assert int(limit.read_text()) == 65536 * 1024
        cpu = [f for f in processes.groups if (f / "cpu.cfs_quota_us").exists()]
        if cpu:
            assert int((cpu[0] / "cpu.cfs_quota_us").read_text()) == 50_000
        tick = root / "work" / "test.Limited" / "tick"
        await wait_for(tick)
        nucleus.processes.pause("test.Limited")
        await anyio.sleep(0.3)
        frozen = tick.read_text()
        await anyio.sleep(0.3)
        assert tick.read_text() == frozen  # nothing of it ran while paused
        nucleus.processes.resume("test.Limited")
        with anyio.fail_after(5):
            while tick.read_text() == frozen:
                await anyio.sleep(0.02)
        # A paused component still stops (thawed, then killed).
        processes.pause()
        with pytest.raises(LookupError, match="test.Absent has no running processes"):
            nucleus.processes.pause("test.Absent")


async def test_a_run_process_that_ends_after_the_stop_finished_is_not_an_error(
        tmp_path: Path) -> None:
    # The race behind spurious ERRORED (exit -15) after a graceful stop: on_stop
    # saw the run process end and set FINISHED before the run step's watcher
    # looked at its exit code; the watcher then took the SIGTERM for a crash.
    path = recipe(tmp_path / "recipes", "test.Long", lifecycle="""\
        Run: exec sleep 300
    """)
    root = tmp_path / "root"
    paths = ComponentPaths(root=root, artifacts=root / "a", work=root / "work" / "test.Long",
                           decompressed=root / "d", log=root / "logs" / "test.Long.log")
    states: list[State] = []
    actor = ComponentActor(load_recipe(path), {}, paths,
                           on_state=lambda name, state, reason: states.append(state))
    process = await actor._open("run", actor.recipe.lifecycle["run"])
    try:
        actor.state = State.FINISHED  # the stop has finished
        os.kill(process.pid, signal.SIGTERM)
        await actor._watch_run(process)  # returns: no ComponentError for the supervisor
        assert states == [] and actor.state is State.FINISHED
    finally:
        await containment_for(root).close()  # the actor's cgroups, made without a Nucleus


async def test_restarts_and_stops_never_report_errored(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipe(recipes, "test.Long", lifecycle="""\
        Run: "echo running; exec sleep 300"
    """)
    nucleus = Nucleus(tmp_path / "root")
    async with nucleus:
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes, merge={"test.Long": "1.0.0"}))
        for _ in range(15):
            await nucleus.wait_states(["test.Long"], [State.RUNNING], timeout=10)
            assert await nucleus.control(RestartComponent("test.Long")) == "SUCCEEDED"
        await nucleus.wait_states(["test.Long"], [State.RUNNING], timeout=10)
        history = nucleus.status["test.Long"].history
    assert State.ERRORED not in history, history


@pytest.mark.parametrize("mode", MODES)
async def test_a_timed_out_step_is_ended_whole(tmp_path: Path, mode: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Slow", lifecycle="""\
        Install:
          Script: "sleep 300 & echo $! > child.pid; sleep 300"
          Timeout: 0.5
    """)
    async with Nucleus(root, containment=mode) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Slow": "1.0.0"}))
    assert "install step timed out after 0.5 s" in record.cause
    [child] = pids(root / "work" / "test.Slow", "child.pid")
    assert not alive(child)
    # The step's own process, dead but not yet collected, is not "still running".
    assert "still running" not in caplog.text


def state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


async def test_the_fallback_adopts_orphans_and_collects_them(tmp_path: Path) -> None:
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Orphans", lifecycle="""\
        Startup: "(sh -c 'echo $$ > orphan.pid; exec sleep 0.3' > /dev/null 2>&1 &)"
    """)
    async with Nucleus(root, containment="process-group") as nucleus:
        if not nucleus.processes.subreaper:
            pytest.skip("this kernel refuses PR_SET_CHILD_SUBREAPER (QEMU's user mode does)")
        await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                               merge={"test.Orphans": "1.0.0"}))
        await wait_for(root / "work" / "test.Orphans" / "orphan.pid")
        [orphan] = pids(root / "work" / "test.Orphans", "orphan.pid")
        # Re-parented to the runtime (the subreaper), not to init.
        found = state_and_parent(orphan)
        assert found is not None and found[1] == os.getpid()
        with anyio.fail_after(5):
            while state_and_parent(orphan) != ("Z", os.getpid()):
                await anyio.sleep(0.05)
        assert await nucleus.control(StopComponent("test.Orphans")) == "SUCCEEDED"
        assert state_and_parent(orphan) is None  # collected, no zombie left


async def test_a_new_start_ends_what_a_failed_start_left(tmp_path: Path) -> None:
    # A start that fails after its startup step started a daemon never runs
    # on_stop: the next instance's first step ends what it left, so restarts do
    # not pile daemons up.
    path = recipe(tmp_path / "recipes", "test.Flaky", lifecycle="""\
        Startup: "sleep 300 > /dev/null 2>&1 & echo $! >> daemons; exit 1"
    """)
    root = tmp_path / "root"
    paths = ComponentPaths(root=root, artifacts=root / "a", work=root / "work" / "test.Flaky",
                           decompressed=root / "d", log=root / "logs" / "test.Flaky.log")
    try:
        for attempt in (1, 2):
            actor = ComponentActor(load_recipe(path), {}, paths)
            with pytest.raises(ComponentError, match="startup step exited with code 1"):
                await actor._run_step("startup")
            daemons = pids(paths.work, "daemons") if attempt == 1 else \
                [int(p) for p in (paths.work / "daemons").read_text().split()]
        assert [alive(pid) for pid in daemons] == [False, True]
    finally:
        await containment_for(root).close()


@pytest.mark.parametrize(("raw", "message"), [
    ("ggc_user", "RunWith must be a mapping"),
    ({"posixUser": 7}, "posixUser must be 'user' or 'user:group'"),
    ({"systemResourceLimits": {"memory": -1}}, "memory must be a positive number of kilobytes"),
    ({"systemResourceLimits": {"memory": "1G"}}, "memory must be a positive number"),
    ({"systemResourceLimits": {"cpus": True}}, "cpus must be a positive number of cores"),
    ({"systemResourceLimits": [1]}, "SystemResourceLimits must be a mapping"),
])
def test_a_malformed_run_with_is_named(raw: object, message: str) -> None:
    with pytest.raises(RunWithError, match=f"component test.X: runWith: .*{message}"):
        RunWith.parse(raw, "component test.X: runWith")


def test_a_damaged_run_with_file_falls_back_to_the_default(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "run-with.json").write_text("[1, 2]")
    containment = Containment(tmp_path, "t", "process-group",
                              default=RunWith(memory_kb=1024))
    assert containment.component("test.X").run_with == RunWith(memory_kb=1024)
    assert "run-with.json: not a mapping of component names" in caplog.text
    containment.set_run_with({"test.X": {"systemResourceLimits": {"cpus": 0.5}}})
    again = Containment(tmp_path, "t2", "process-group")
    assert again.settings == {"test.X": RunWith(cpus=0.5)}


async def test_a_component_that_fails_at_the_runtime_s_start_leaves_no_process_or_cgroup(
        tmp_path: Path) -> None:
    # A component whose startup step fails when the runtime starts again is
    # reported (the runtime starts all the same: issue 15, part 1); what its
    # failed step started, and its cgroups, must not stay behind.
    recipes, root = tmp_path / "recipes", tmp_path / "root"
    recipe(recipes, "test.Flaky", lifecycle="""\
        Startup: |
          sleep 300 > /dev/null 2>&1 &
          echo $! >> daemons
          echo x >> tries
          [ "$(wc -l < tries)" -eq 1 ]
    """)
    async with Nucleus(root) as nucleus:
        record = await nucleus.deploy(DeploymentRequest(recipe_dir=recipes,
                                                        merge={"test.Flaky": "1.0.0"}))
        assert record.detailed_status is DetailedStatus.SUCCESSFUL, record.cause
    nucleus = Nucleus(root)
    groups = nucleus.processes.component("test.Flaky").groups
    async with nucleus:
        status = nucleus.status["test.Flaky"]
        assert status.state is State.ERRORED
        assert "startup step exited with code 1" in status.reason
    daemons = [int(p) for p in (root / "work" / "test.Flaky" / "daemons").read_text().split()]
    assert len(daemons) == 2 and not any(alive(pid) for pid in daemons)
    assert not any(folder.exists() for folder in groups)
