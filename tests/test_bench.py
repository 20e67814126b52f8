"""The benchmark harness runs end to end and writes complete results.

A quick (smoke) run of every benchmark in a subprocess, then checks of what it
wrote. Nothing here asserts anything about speed: figures on a shared CI
machine are not a test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pykka", reason="the bench extra is not installed")
pytest.importorskip("matplotlib", reason="the bench extra is not installed")

from bench._core import Case, Contender, Metric, ours_better_ratio, run_case
from bench._readme import END, START

ROOT = Path(__file__).resolve().parents[1]
NATIVE = importlib.util.find_spec("actors._native_imgconv") is not None
QUICK_RUN_TIMEOUT = 240  # the quick run takes well under 60 s; leave room for a loaded CI box


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def listed() -> list[str]:
    proc = bench("--list")
    assert proc.returncode == 0, proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    proc = bench(
        "--quick", "--json", str(out / "r.json"), "--out", str(out), timeout=QUICK_RUN_TIMEOUT
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return out, json.loads((out / "r.json").read_text())


def test_list_names_every_benchmark_with_a_description(listed: list[str]) -> None:
    assert {"membw", "startup", "tell", "ask", "restart", "spawn", "convert"} <= set(listed)
    proc = bench("--list")
    assert all(len(line.split(maxsplit=1)) == 2 for line in proc.stdout.splitlines())


def test_every_listed_benchmark_has_samples_and_ratios(
    listed: list[str], quick_run: tuple[Path, dict[str, Any]]
) -> None:
    _, document = quick_run
    assert document["quick"] is True
    assert document["machine"]["cpu_model"]
    assert document["machine"]["python"]
    for name in listed:
        result = document["benchmarks"][name]
        if name == "convert" and not NATIVE:
            assert result["status"] == "skipped" and result["reason"]
            continue
        assert result["status"] == "ok", f"{name}: {result['reason']}"
        assert result["cases"], name
        for case in result["cases"]:
            metrics = [m["name"] for m in case["metrics"]]
            for contender in case["contenders"]:
                for metric in metrics:
                    samples = contender["samples"][metric]
                    assert samples, f"{name}/{case['name']}/{contender['name']}/{metric}"
                    assert contender["stats"][metric]["n"] == len(samples)
            assert "ratios" in case
            others = {c["name"] for c in case["contenders"] if c["role"] != "ours"}
            ours = {c["name"] for c in case["contenders"] if c["role"] == "ours"}
            if others and ours:
                assert case["ratios"], f"{name}/{case['name']} has peers but no ratios"
                compared = {r["peer"] for r in case["ratios"]}
                peers = {c["name"] for c in case["contenders"] if c["role"] in ("peer", "bound")}
                assert peers <= compared, f"{name}/{case['name']}: {peers - compared} not compared"
            for ratio in case["ratios"]:
                assert ratio["ratio"] is None or ratio["ratio"] > 0


def test_writes_markdown_and_charts(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, document = quick_run
    latest = out / "latest"
    runs = [p for p in out.iterdir() if p.is_dir() and p.name != "latest"]
    assert len(runs) == 1
    for folder in (latest, runs[0]):
        assert (folder / "results.md").read_text().startswith("# edge-actors benchmarks")
        assert (folder / "ratios.png").read_bytes().startswith(b"\x89PNG")
        assert json.loads((folder / "results.json").read_text()) == document
    for name, result in document["benchmarks"].items():
        if result["status"] == "ok":
            assert (latest / f"{name}.png").is_file()


def test_readme_section_is_regenerated(
    tmp_path: Path, quick_run: tuple[Path, dict[str, Any]]
) -> None:
    out, _ = quick_run
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{START}\nold figures\n{END}\n\nafter\n")
    proc = bench("--readme", str(readme), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert text.startswith(f"# Title\n\nintro\n\n{START}\n")
    assert text.endswith(f"\n{END}\n\nafter\n")
    assert "old figures" not in text
    assert "| benchmark | case | metric | ours | vs |" in text
    assert "latest/ratios.png" in text

    again = bench("--readme", str(readme), "--out", str(out))
    assert again.returncode == 0 and readme.read_text() == text


def test_readme_without_markers_is_an_error_naming_file_and_markers(
    tmp_path: Path, quick_run: tuple[Path, dict[str, Any]]
) -> None:
    out, _ = quick_run
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    proc = bench("--readme", str(readme), "--out", str(out))
    assert proc.returncode == 1
    assert str(readme) in proc.stderr and START in proc.stderr and END in proc.stderr
    assert readme.read_text() == "# Title\n"


def test_unknown_benchmark_is_a_usage_error() -> None:
    proc = bench("no-such-bench")
    assert proc.returncode == 2
    assert "no-such-bench" in proc.stderr


def test_ratio_reads_as_how_many_times_better_ours_is() -> None:
    assert ours_better_ratio(1.0, 2.0, "lower") == 2.0  # half the time: twice as good
    assert ours_better_ratio(2.0, 1.0, "higher") == 2.0  # twice the throughput
    assert ours_better_ratio(0.0, 1.0, "lower") is None


def test_contenders_are_interleaved_after_warmup() -> None:
    calls: list[str] = []

    def contender(name: str) -> Contender:
        def sample() -> dict[str, float]:
            calls.append(name)
            return {"t": 1.0}

        return Contender(name, "ours" if name == "a" else "peer", sample)

    case = Case(
        "c", (Metric("t", "s", "lower"),), (contender("a"), contender("b")), samples=3, warmup=1
    )
    result = run_case(case)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(c.samples["t"]) for c in result.contenders] == [3, 3]
