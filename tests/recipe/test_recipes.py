"""Recipe loading: every field of a valid recipe, platform matching, and 200
malformed recipes each refused with its exact error (file, key path, expectation)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from actors.recipe import (
    DependencyType,
    Platform,
    RecipeError,
    detect_platform,
    load_recipe,
    parse_recipe,
)

AMD64 = Platform("linux", "amd64")
ARM = Platform("linux", "arm", "arm71")

VALID: dict[str, Any] = {
    "RecipeFormatVersion": "2020-01-25",
    "ComponentName": "com.example.Classifier",
    "ComponentVersion": "1.2.3",
    "ComponentType": "aws.greengrass.generic",
    "ComponentDescription": "classifies",
    "ComponentPublisher": "tests",
    "ComponentConfiguration": {"DefaultConfiguration": {"InferenceInterval": 3600,
                                                        "accessControl": {}}},
    "ComponentDependencies": {
        "variant.DLR": {"VersionRequirement": ">=1.6.0 <2.0.0", "DependencyType": "HARD"},
        "variant.Model": {"VersionRequirement": "^2.1.0", "DependencyType": "SOFT"},
    },
    "Manifests": [
        {
            "Platform": {"os": "linux", "architecture": "/amd64|x86_64/"},
            "Lifecycle": {
                "Setenv": {"MODEL": "mobilenet"},
                "Install": {"Script": "echo install", "Timeout": 30,
                            "Skipif": "onpath python3"},
                "Run": {"Script": "python3 {artifacts:path}/infer.py", "RequiresPrivilege": False},
            },
            "Artifacts": [{
                "URI": "s3://models/infer.py",
                "Digest": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "Algorithm": "SHA-256",
                "Permission": {"Read": "ALL", "Execute": "OWNER"},
            }, {"URI": "s3://models/model.zip", "Unarchive": "ZIP"}],
        },
        {
            "Platform": {"os": "linux", "architecture": "arm"},
            "Selections": ["arm"],
        },
    ],
    "Lifecycle": {"arm": {"Run": "echo arm"}},
}


def test_a_valid_recipe_loads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(VALID))
    recipe = load_recipe(path, AMD64)
    assert (recipe.name, recipe.version, recipe.publisher) == \
        ("com.example.Classifier", "1.2.3", "tests")
    assert recipe.default_configuration["InferenceInterval"] == 3600
    assert recipe.dependencies["variant.DLR"].type is DependencyType.HARD
    assert recipe.dependencies["variant.Model"].type is DependencyType.SOFT
    assert recipe.dependencies["variant.Model"].spec.match(recipe.semver.__class__("2.5.0"))
    assert recipe.setenv == {"MODEL": "mobilenet"}
    install = recipe.lifecycle["install"]
    assert (install.timeout, install.skipif) == (30.0, ("onpath", "python3"))
    assert [a.filename for a in recipe.artifacts] == ["infer.py", "model.zip"]
    assert recipe.artifacts[0].permission.read == "ALL"
    assert recipe.artifacts[1].unarchive == "ZIP"
    # The arm manifest selects the global lifecycle's "arm" entry.
    arm = load_recipe(path, ARM)
    assert arm.lifecycle["run"].script == "echo arm" and arm.artifacts == ()


def test_keys_match_case_insensitively(tmp_path: Path) -> None:
    def lower(node: Any) -> Any:
        if isinstance(node, dict):
            return {k.lower() if k[0].isupper() else k: lower(v) for k, v in node.items()}
        if isinstance(node, list):
            return [lower(v) for v in node]
        return node

    path = tmp_path / "r.json"
    path.write_bytes(orjson.dumps(lower(VALID)))
    recipe = load_recipe(path, AMD64)
    assert recipe.name == "com.example.Classifier"
    assert recipe.lifecycle["install"].skipif == ("onpath", "python3")


@pytest.mark.parametrize(("machine", "arch", "detail"), [
    ("x86_64", "amd64", None), ("armv7l", "arm", "arm71"), ("aarch64", "aarch64", None)])
def test_platform_detection_uses_greengrass_names(machine: str, arch: str,
                                                  detail: str | None) -> None:
    device = detect_platform(machine=machine)
    assert (device.os, device.architecture, device.detail) == ("linux", arch, detail)


def test_platform_override_and_custom_keys(tmp_path: Path) -> None:
    device = detect_platform({"architecture": "arm", "architecture.detail": "arm71",
                              "board": "pi4"}, machine="x86_64")
    data = copy.deepcopy(VALID)
    data["Manifests"].insert(0, {"Platform": {"os": "linux", "board": "/pi[0-9]/"},
                                 "Lifecycle": {"Run": "echo pi"}})
    assert parse_recipe(data, tmp_path / "r.yaml", device).lifecycle["run"].script == "echo pi"
    assert parse_recipe(data, tmp_path / "r.yaml", AMD64).lifecycle["run"].script.startswith(
        "python3")


# -- 200 malformed recipes -------------------------------------------------

def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node: Any = data
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split("/")]
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


_DELETE = object()
M0 = "Manifests/0"
L0 = "Manifests/0/Lifecycle"
A0 = "Manifests/0/Artifacts/0"

# (what to change, value, the exact error after "<file>: ")
MUTATIONS: list[tuple[str, Any, str]] = [
    ("RecipeFormatVersion", "2020-01-26",
     "RecipeFormatVersion: expected '2020-01-25', got '2020-01-26'"),
    ("RecipeFormatVersion", _DELETE, "RecipeFormatVersion: expected '2020-01-25', got None"),
    ("ComponentName", _DELETE, "ComponentName: expected a component name, got nothing"),
    ("ComponentName", 12, "ComponentName: expected a component name, got int 12"),
    ("ComponentName", "bad name!", "ComponentName: 'bad name!' is not a valid component name "
     "(letters, digits, '.', '_' and '-', at most 128 characters)"),
    ("ComponentName", "x" * 129, "ComponentName: '" + "x" * 129 + "' is not a valid component "
     "name (letters, digits, '.', '_' and '-', at most 128 characters)"),
    ("ComponentName", "com.example.A\n", "ComponentName: 'com.example.A\\n' is not a valid "
     "component name (letters, digits, '.', '_' and '-', at most 128 characters)"),
    ("ComponentVersion", "1.0.0\n", "ComponentVersion: '1.0.0\\n' is not a semantic version "
     "(major.minor.patch); quote it in YAML"),
    ("ComponentVersion", "1.x", "ComponentVersion: '1.x' is not a semantic version "
     "(major.minor.patch); quote it in YAML"),
    ("ComponentVersion", "1.0", "ComponentVersion: '1.0' is not a semantic version "
     "(major.minor.patch); quote it in YAML"),
    ("ComponentVersion", "01.0.0", "ComponentVersion: '01.0.0' is not a semantic version "
     "(major.minor.patch); quote it in YAML"),
    ("ComponentVersion", 1.0, "ComponentVersion: 1.0 is not a semantic version "
     "(major.minor.patch); quote it in YAML"),
    ("ComponentVersion", "1000000.0.0", "ComponentVersion: '1000000.0.0': Greengrass allows "
     "at most 64 characters and 6 digits in each of major, minor and patch"),
    ("ComponentVersion", "1.0.0-" + "a" * 60, "ComponentVersion: '1.0.0-" + "a" * 60 + "': "
     "Greengrass allows at most 64 characters and 6 digits in each of major, minor and patch"),
    ("ComponentVersion", _DELETE, "ComponentVersion: None is not a semantic version "
     "(major.minor.patch); quote it in YAML"),
    ("ComponentType", "aws.greengrass.docker", "ComponentType: expected one of "
     "aws.greengrass.generic, aws.greengrass.lambda, aws.greengrass.plugin, "
     "aws.greengrass.nucleus, got 'aws.greengrass.docker'"),
    ("ComponentNmae", "x", "ComponentNmae: unknown key; did you mean ComponentName?"),
    ("Foo", 1, "Foo: unknown key; expected one of RecipeFormatVersion, ComponentName, "
     "ComponentVersion, ComponentType, ComponentDescription, ComponentPublisher, "
     "ComponentSource, ComponentConfiguration, ComponentDependencies, Manifests, Lifecycle"),
    ("ComponentConfiguration", [], "ComponentConfiguration: expected a mapping, got list []"),
    ("ComponentConfiguration/DefaultConfiguration", "x",
     "ComponentConfiguration.DefaultConfiguration: expected a mapping, got str 'x'"),
    ("ComponentConfiguration/Default", {}, "ComponentConfiguration.Default: unknown key; "
     "did you mean DefaultConfiguration?"),
    ("ComponentDependencies", ["variant.DLR"], "ComponentDependencies: expected a mapping of "
     "component names, got list ['variant.DLR']"),
    ("ComponentDependencies/variant.DLR", ">=1.0.0", "ComponentDependencies.variant.DLR: "
     "expected a mapping with VersionRequirement, got str '>=1.0.0'"),
    ("ComponentDependencies/variant.DLR/VersionRequirement", ">=1.0.0 <<2",
     "ComponentDependencies.variant.DLR.VersionRequirement: '>=1.0.0 <<2' is not a semver range"),
    ("ComponentDependencies/variant.DLR/VersionRequirement", "~>1.0",
     "ComponentDependencies.variant.DLR.VersionRequirement: '~>1.0' is not a semver range"),
    ("ComponentDependencies/variant.DLR/VersionRequirement", "one",
     "ComponentDependencies.variant.DLR.VersionRequirement: 'one' is not a semver range"),
    ("ComponentDependencies/variant.DLR/DependencyType", "WEAK",
     "ComponentDependencies.variant.DLR.DependencyType: expected HARD or SOFT, got 'WEAK'"),
    ("ComponentDependencies/variant.DLR/Version", "1.0.0",
     "ComponentDependencies.variant.DLR.Version: unknown key; did you mean VersionRequirement?"),
    ("ComponentDependencies/com.example.Classifier", {"VersionRequirement": "*"},
     "ComponentDependencies.com.example.Classifier: a component cannot depend on itself"),
    ("Manifests", {"os": "linux"}, "Manifests: expected a list of manifests, got dict "
     "{'os': 'linux'}"),
    (M0, "linux", "Manifests[0]: expected a mapping, got str 'linux'"),
    (f"{M0}/Platfrom", {}, "Manifests[0].Platfrom: unknown key; did you mean Platform?"),
    (f"{M0}/Platform", "linux", "Manifests[0].Platform: expected a mapping, got str 'linux'"),
    (f"{M0}/Platform/architecture", "/amd64(/", "Manifests[0].Platform.architecture: "
     "'/amd64(/' is not a valid regular expression: missing ), unterminated subpattern at "
     "position 5"),
    (f"{M0}/Selections", "arm", "Manifests[0].Selections: expected a list of selection names, "
     "got str 'arm'"),
    (L0, "echo hi", "Manifests[0].Lifecycle: expected a mapping of lifecycle steps, got str "
     "'echo hi'"),
    (f"{L0}/Instal", "echo", "Manifests[0].Lifecycle.Instal: unknown key; did you mean Install?"),
    (f"{L0}/Startup", "echo", "Manifests[0].Lifecycle: give Startup or Run, not both"),
    (f"{L0}/Setenv", ["A=1"], "Manifests[0].Lifecycle.Setenv: expected a mapping of environment "
     "variables, got list ['A=1']"),
    (f"{L0}/Setenv/A", [1], "Manifests[0].Lifecycle.Setenv.A: expected a string value, got [1]"),
    (f"{L0}/Install", 5, "Manifests[0].Lifecycle.Install: expected a script string or a mapping "
     "with Script, got int 5"),
    (f"{L0}/Install/Script", _DELETE, "Manifests[0].Lifecycle.Install.Script: expected a script "
     "string, got nothing"),
    (f"{L0}/Install/Script", ["echo"], "Manifests[0].Lifecycle.Install.Script: expected a script "
     "string, got list ['echo']"),
    (f"{L0}/Install/Timeout", "30s", "Manifests[0].Lifecycle.Install.Timeout: expected a number "
     "of seconds (or a recipe variable such as {configuration:/timeout}), got str '30s'"),
    (f"{L0}/Install/Timeout", 0, "Manifests[0].Lifecycle.Install.Timeout: expected a positive "
     "number of seconds, got 0"),
    (f"{L0}/Install/Timeout", True, "Manifests[0].Lifecycle.Install.Timeout: expected a number "
     "of seconds (or a recipe variable such as {configuration:/timeout}), got bool True"),
    (f"{L0}/Install/Skipif", "onpth python3", "Manifests[0].Lifecycle.Install.Skipif: expected "
     "'onpath <executable>' or 'exists <file>', got 'onpth python3'"),
    (f"{L0}/Install/Skipif", "exists", "Manifests[0].Lifecycle.Install.Skipif: expected "
     "'onpath <executable>' or 'exists <file>', got 'exists'"),
    (f"{L0}/Install/Retry", 3, "Manifests[0].Lifecycle.Install.Retry: unknown key; expected one "
     "of Script, Timeout, RequiresPrivilege, Setenv, Skipif"),
    (f"{L0}/Install/BootstrapOnRollback", True, "Manifests[0].Lifecycle.Install."
     "BootstrapOnRollback: unknown key; expected one of Script, Timeout, RequiresPrivilege, "
     "Setenv, Skipif"),
    (f"{L0}/Install/Timeout", "{configuration:/x", "Manifests[0].Lifecycle.Install.Timeout: "
     "expected a number of seconds (or a recipe variable such as {configuration:/timeout}), "
     "got str '{configuration:/x'"),
    (f"{L0}/Install/Timeout", "-5", "Manifests[0].Lifecycle.Install.Timeout: expected a "
     "positive number of seconds, got '-5'"),
    (f"{L0}/ErrorResetTime", "soon", "Manifests[0].Lifecycle.ErrorResetTime: expected a "
     "positive number of seconds, got 'soon'"),
    (f"{A0}/URI", "s3://bucket-only", "Manifests[0].Artifacts[0].URI: 's3://bucket-only': "
     "expected s3://bucket/key"),
    (f"{A0}/URI", "s3:bucket/key", "Manifests[0].Artifacts[0].URI: 's3:bucket/key': "
     "expected s3://bucket/key"),
    (f"{A0}/URI", "greengrass:", "Manifests[0].Artifacts[0].URI: 'greengrass:' names no file"),
    (f"{A0}/URI", "docker:MySQL:8.0", "Manifests[0].Artifacts[0].URI: 'docker:MySQL:8.0': "
     "'MySQL' is not an image name (lower-case letters, digits, '.', '_', '-', '/'); expected "
     "docker:[registry/]image[:tag|@digest]"),
    (f"{A0}/URI", "docker:ubuntu@sha256:abc", "Manifests[0].Artifacts[0].URI: "
     "'docker:ubuntu@sha256:abc': 'sha256:abc' is not an image digest (algorithm:hex); "
     "expected docker:[registry/]image[:tag|@digest]"),
    (f"{A0}/URI", "ecr://x/y", "Manifests[0].Artifacts[0].URI: 'ecr://x/y' has no supported "
     "scheme; expected s3://bucket/key, greengrass:<file>, docker:<image> or (this runtime's "
     "own) file:///path"),
    (f"{L0}/Run/RequiresPrivilege", "maybe", "Manifests[0].Lifecycle.Run.RequiresPrivilege: "
     "expected true or false, got 'maybe'"),
    ("Manifests/0/Artifacts", {"URI": "s3://b/k"}, "Manifests[0].Artifacts: expected a list of "
     "artifacts, got dict {'URI': 's3://b/k'}"),
    (A0, "s3://b/k", "Manifests[0].Artifacts[0]: expected a mapping with URI, got str 's3://b/k'"),
    (f"{A0}/URI", _DELETE, "Manifests[0].Artifacts[0].URI: expected an artifact URI, got nothing"),
    (f"{A0}/URI", "http://x/y", "Manifests[0].Artifacts[0].URI: 'http://x/y' has no supported "
     "scheme; expected s3://bucket/key, greengrass:<file>, docker:<image> or (this runtime's "
     "own) file:///path"),
    (f"{A0}/URI", "s3://models/model.zip", "Manifests[0].Artifacts[1].URI: two artifacts are "
     "named 'model.zip'"),
    (f"{A0}/Algorithm", "SHA-512", "Manifests[0].Artifacts[0].Digest: "
     "'47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' is a base64 SHA-256 digest, but "
     "Algorithm is SHA-512; make them agree"),
    (f"{A0}/Digest", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "Manifests[0].Artifacts[0].Digest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49599"
     "1b7852b855' is a hex digest; Greengrass writes Digest in base64: "
     "'47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"),
    (f"{A0}/Algorithm", "MD5", "Manifests[0].Artifacts[0].Algorithm: expected one of SHA-256, "
     "SHA-384, SHA-512, got 'MD5'"),
    (f"{A0}/Unarchive", "TAR", "Manifests[0].Artifacts[0].Unarchive: expected NONE or ZIP, "
     "got 'TAR'"),
    (f"{A0}/Permission/Read", "EVERYONE", "Manifests[0].Artifacts[0].Permission.Read: expected "
     "NONE, OWNER or ALL, got 'EVERYONE'"),
    (f"{A0}/Permission/Write", "ALL", "Manifests[0].Artifacts[0].Permission.Write: unknown key; "
     "expected one of Read, Execute"),
    (f"{A0}/Checksum", "x", "Manifests[0].Artifacts[0].Checksum: unknown key; expected one of "
     "URI, Digest, Algorithm, Unarchive, Permission"),
    ("Manifests/1/Lifecycle", {"Run": {"Script": 1}}, "Manifests[1].Lifecycle.Run.Script: "
     "expected a script string, got int 1"),
]


def _cases() -> list[tuple[str, Any, str, str, bool]]:
    cases = [(path, value, error, fmt, lowered)
             for path, value, error in MUTATIONS
             for fmt in ("yaml", "json")
             for lowered in (False, True)]
    # And files that are not recipes at all.
    broken = ["ComponentName: [unclosed", "a: b: c", "- just\n- a list", "\t tab: x",
              "key: 'unterminated", "", "42", "RecipeFormatVersion: 2020-01-25\n"]
    cases += [("", text, "", "raw", False) for text in broken]
    assert len(cases) >= 200
    return cases


@pytest.mark.parametrize(("path", "value", "error", "fmt", "lowered"), _cases())
def test_malformed_recipe_gets_its_exact_error(tmp_path: Path, path: str, value: Any,
                                               error: str, fmt: str, lowered: bool) -> None:
    target = tmp_path / f"recipe.{'json' if fmt == 'json' else 'yaml'}"
    if fmt == "raw":
        target.write_text(value)
        with pytest.raises(RecipeError) as info:
            load_recipe(target, ARM)
        message = str(info.value)
        assert message.startswith(f"{target}: ")
        assert "\n" not in message
        return
    data = copy.deepcopy(VALID)
    _set(data, path, value)
    if not path.startswith("Manifests/1/Platform"):
        device = AMD64
    else:
        device = ARM
    if lowered:  # keys match whatever their case: the same error, up to the keys' case
        data = orjson.loads(orjson.dumps(data).decode().replace('"Manifests"', '"manifests"')
                            .replace('"Lifecycle"', '"lifecycle"'))
    if fmt == "json":
        target.write_bytes(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
    else:
        target.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError) as info:
        load_recipe(target, device)
    if lowered:
        assert str(info.value).lower() == f"{target}: {error}".lower()
    else:
        assert str(info.value) == f"{target}: {error}"


def test_the_ml_runtime_recipes_on_armv7l_give_advice_instead_of_pip_install() -> None:
    # PyPI has no armv7l wheel for onnxruntime, nor a DLR with libdlr: on a Raspberry Pi the
    # ONNX Runtime component says what to do rather than fail inside pip, and the DLR one
    # installs nothing: DLR folders run on edge-actors' own graph executor there.
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    for name, hint in [("variant.ONNXRuntime-1.0.0.yaml", "build ONNX Runtime for this board"),
                       ("variant.DLR-1.6.0.yaml", "edge-actors graph executor")]:
        install = load_recipe(recipes / name, ARM).lifecycle["install"].script
        assert install is not None and hint in install and "pip install" not in install, name
        assert "pip install" in str(load_recipe(recipes / name, AMD64).lifecycle["install"].script)
