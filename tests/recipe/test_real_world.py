"""Real-world-shaped recipes (tests/recipe/real_world/): each accepted or refused
as Greengrass would. A file's leading comments say what to expect:
``# error: <message after the file name>`` (refused), ``# warning: ...`` (accepted
with that warning), ``# platform: k=v,...`` (the device it is for)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actors.recipe import Platform, RecipeError, detect_platform, load_recipe

FOLDER = Path(__file__).parent / "real_world"
AMD64 = Platform("linux", "amd64")


def expectations(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, colon, value = line[1:].partition(":")
        if colon and key.strip() in ("error", "warning", "platform", "warning-elsewhere"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def device(expected: dict[str, list[str]]) -> Platform:
    if "platform" not in expected:
        return AMD64
    pairs = (item.split("=", 1) for item in expected["platform"][0].split(","))
    return detect_platform(dict(pairs), machine="x86_64")


ACCEPTED = sorted((FOLDER / "accepted").iterdir())
REFUSED = sorted((FOLDER / "refused").iterdir())


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.name for p in ACCEPTED])
def test_accepted_as_greengrass_accepts_it(path: Path) -> None:
    expected = expectations(path)
    recipe = load_recipe(path, device(expected))
    assert recipe.matched
    assert len(recipe.warnings) == len(expected.get("warning", []))
    for warning, wanted in zip(recipe.warnings, expected.get("warning", []), strict=True):
        assert warning.startswith(f"{path}: {wanted}")
    for wanted in expected.get("warning-elsewhere", []):  # judged on an amd64 machine
        elsewhere = load_recipe(path, AMD64)
        assert not elsewhere.matched and any(wanted in w for w in elsewhere.warnings)


@pytest.mark.parametrize("path", REFUSED, ids=[p.name for p in REFUSED])
def test_refused_with_the_key_named(path: Path) -> None:
    expected = expectations(path)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, AMD64)
    assert str(info.value).startswith(f"{path}: {expected['error'][0]}")


def test_what_the_recipes_mean() -> None:
    accepted = FOLDER / "accepted"
    ranges = load_recipe(accepted / "com.example.Ranges-1.0.0.yaml", AMD64).dependencies
    assert ranges["aws.greengrass.Nucleus"].requirement == ">=2.0.3"
    assert ranges["aws.greengrass.LogManager"].requirement == ">=2.0.0 <2.4.0"
    from semantic_version import Version

    assert ranges["aws.greengrass.LogManager"].spec.match(Version("2.3.9"))
    assert not ranges["aws.greengrass.LogManager"].spec.match(Version("2.4.0"))
    assert ranges["aws.greengrass.LocalDebugConsole"].requirement == "*"
    timeouts = load_recipe(accepted / "com.example.Timeouts-1.0.0.yaml", AMD64).lifecycle
    assert timeouts["install"].timeout == 120.0
    assert timeouts["startup"].timeout == "{configuration:/startupTimeoutSeconds}"
    assert timeouts["startup"].seconds(lambda text: "90") == 90.0
    with pytest.raises(RecipeError, match="is 'soon' once its variables are filled in"):
        timeouts["startup"].seconds(lambda text: "soon")
    boot = load_recipe(accepted / "com.example.Bootstrap-1.0.0.yaml", AMD64)
    assert boot.lifecycle["bootstrap"].bootstrap_on_rollback
    assert boot.lifecycle["bootstrap"].requires_privilege
    assert boot.lifecycle["install"].requires_privilege
    assert not boot.lifecycle["run"].requires_privilege
    assert boot.lifecycle["shutdown"].skipif == ("exists", "stopped.flag")
    assert boot.lifecycle["shutdown"].skipif_negated
    assert boot.error_reset_time == 600.0 and "uninstall" in boot.lifecycle
    zipped = load_recipe(accepted / "com.example.HelloWorldZip-1.0.0.yaml", AMD64)
    assert zipped.artifacts[0].filename == "HelloWorld.zip"
    assert zipped.artifacts[0].digest is None  # a placeholder is not checked
    selections = load_recipe(accepted / "com.example.Selections-1.0.0.yaml", AMD64)
    assert selections.lifecycle["run"].script == "echo linux run"
    windows = load_recipe(accepted / "com.example.Selections-1.0.0.yaml",
                          Platform("windows", "amd64"))
    assert windows.lifecycle["run"].script == "echo windows run"
    assert "install" not in windows.lifecycle


def test_recipe_check_judges_a_recipe_whatever_the_machine() -> None:
    accepted = FOLDER / "accepted"
    arm64 = accepted / "com.example.Aarch64Only-1.0.0.yaml"
    here = subprocess.run([sys.executable, "-m", "actors", "recipe", "check", str(arm64),
                           *map(str, REFUSED[:1])], capture_output=True, text=True, timeout=60)
    assert here.returncode == 1  # the refused one
    assert f"{arm64}: ok (com.example.Aarch64Only 1.0.0" in here.stdout
    if detect_platform().architecture != "aarch64":
        assert f"warning: {arm64}: Manifests: no manifest matches this device's platform" \
            in here.stderr
    assert "Traceback" not in here.stderr
    there = subprocess.run([sys.executable, "-m", "actors", "recipe", "check", "--platform",
                            "os=linux,architecture=aarch64", str(arm64)],
                           capture_output=True, text=True, timeout=60)
    assert there.returncode == 0, there.stderr
    assert "for linux/aarch64)" in there.stdout and "warning" not in there.stderr
