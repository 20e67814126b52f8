"""Loading and validating recipes: one error naming the file, the key path and
what is expected; never a traceback, never a half-loaded recipe."""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ._model import (
    LIFECYCLE_STEPS,
    RECIPE_FORMAT,
    Artifact,
    Dependency,
    DependencyType,
    Permission,
    Recipe,
    RecipeError,
    Step,
)
from ._platform import Platform, check_platform_value, detect_platform, platform_matches

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOP_KEYS = ("RecipeFormatVersion", "ComponentName", "ComponentVersion", "ComponentType",
             "ComponentDescription", "ComponentPublisher", "ComponentSource",
             "ComponentConfiguration", "ComponentDependencies", "Manifests", "Lifecycle")
_TYPES = ("aws.greengrass.generic", "aws.greengrass.lambda", "aws.greengrass.plugin",
          "aws.greengrass.nucleus")
_URI_SCHEMES = ("s3", "greengrass", "docker", "file", "ecr")
_ALGORITHMS = {"SHA-256": 32, "SHA-384": 48, "SHA-512": 64}
_STEP_KEYS = ("Script", "Timeout", "RequiresPrivilege", "Setenv", "Skipif")


class _Ctx:
    """Where we are in which file: builds errors that name both."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> RecipeError:
        prefix = f"{self.path}: {where}" if where else str(self.path)
        return RecipeError(f"{prefix}: {problem}")

    def expect(self, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            shown = "nothing" if value is None else f"{type(value).__name__} {value!r}"
            raise self.fail(where, f"expected {what}, got {shown}")
        return value

    def mapping(self, where: str, value: Any, what: str = "a mapping") -> dict[Any, Any]:
        if value is None:
            return {}
        return dict(self.expect(where, value, dict, what))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def get(mapping: Mapping[str, Any], key: str) -> Any:
    """Case-insensitive key lookup, as the Java nucleus does."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def _unknown(ctx: _Ctx, where: str, key: Any, known: tuple[str, ...]) -> RecipeError:
    lowered = str(key).lower()
    close = [k for k in known if len(lowered) >= 3 and k.lower().startswith(lowered)] or \
        difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; expected one of {', '.join(known)}"
    return ctx.fail(f"{where}.{key}" if where else str(key), f"unknown key{hint}")


def _check_keys(ctx: _Ctx, where: str, mapping: Mapping[Any, Any], known: tuple[str, ...]) -> None:
    lowered = {k.lower() for k in known}
    for key in mapping:
        if not isinstance(key, str) or key.lower() not in lowered:
            raise _unknown(ctx, where, key, known)


def _env(ctx: _Ctx, where: str, raw: Any) -> dict[str, str]:
    env = ctx.mapping(where, raw, "a mapping of environment variables")
    out = {}
    for key, value in env.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ctx.fail(f"{where}.{key}", f"expected a string value, got {value!r}")
        out[str(key)] = str(value)
    return out


def _step(ctx: _Ctx, where: str, raw: Any) -> Step:
    if isinstance(raw, str):
        return Step(raw)
    step = ctx.expect(where, raw, dict, "a script string or a mapping with Script")
    _check_keys(ctx, where, step, _STEP_KEYS)
    script = ctx.expect(f"{where}.Script", get(step, "Script"), str, "a script string")
    timeout = get(step, "Timeout")
    if timeout is not None:
        ctx.expect(f"{where}.Timeout", timeout, (int, float), "a number of seconds")
        if timeout <= 0:
            raise ctx.fail(f"{where}.Timeout", f"expected a positive number of seconds, "
                           f"got {timeout}")
    privilege = get(step, "RequiresPrivilege")
    if privilege is not None and not isinstance(privilege, bool):
        if str(privilege).lower() not in ("true", "false"):
            raise ctx.fail(f"{where}.RequiresPrivilege",
                           f"expected true or false, got {privilege!r}")
        privilege = str(privilege).lower() == "true"
    skipif = None
    raw_skip = get(step, "Skipif")
    if raw_skip is not None:
        ctx.expect(f"{where}.Skipif", raw_skip, str, "'onpath <executable>' or 'exists <file>'")
        kind, _, target = raw_skip.strip().partition(" ")
        if kind.lower() not in ("onpath", "exists") or not target.strip():
            raise ctx.fail(f"{where}.Skipif",
                           f"expected 'onpath <executable>' or 'exists <file>', got {raw_skip!r}")
        skipif = (kind.lower(), target.strip())
    return Step(script, float(timeout) if timeout is not None else None, bool(privilege),
                _env(ctx, f"{where}.Setenv", get(step, "Setenv")), skipif)


def _lifecycle(ctx: _Ctx, where: str, raw: Any) -> tuple[dict[str, Step], dict[str, str]]:
    body = ctx.expect(where, raw, dict, "a mapping of lifecycle steps")
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    known = ("Setenv", "Bootstrap", "Install", "Startup", "Run", "Shutdown", "Recover")
    for key, value in body.items():
        name = str(key).lower()
        if name == "setenv":
            setenv = _env(ctx, f"{where}.{key}", value)
        elif name in LIFECYCLE_STEPS:
            steps[name] = _step(ctx, f"{where}.{key}", value)
        else:
            raise _unknown(ctx, where, key, known)
    if "startup" in steps and "run" in steps:
        raise ctx.fail(where, "give Startup or Run, not both")
    return steps, setenv


def _dependencies(ctx: _Ctx, raw: Any) -> dict[str, Dependency]:
    deps = ctx.mapping("ComponentDependencies", raw, "a mapping of component names")
    out = {}
    for name, spec in deps.items():
        where = f"ComponentDependencies.{name}"
        body = ctx.expect(where, spec, dict, "a mapping with VersionRequirement")
        _check_keys(ctx, where, body, ("VersionRequirement", "DependencyType"))
        requirement = get(body, "VersionRequirement")
        if requirement is None:
            requirement = "*"
        requirement = str(requirement).strip()
        try:
            from semantic_version import NpmSpec  # on first use (start-up time)

            NpmSpec(requirement)
        except ValueError:
            raise ctx.fail(f"{where}.VersionRequirement",
                           f"{requirement!r} is not a semver range") from None
        kind = str(get(body, "DependencyType") or "HARD").upper()
        if kind not in ("HARD", "SOFT"):
            raise ctx.fail(f"{where}.DependencyType", f"expected HARD or SOFT, got {kind!r}")
        out[str(name)] = Dependency(str(name), requirement, DependencyType(kind))
    return out


def _artifacts(ctx: _Ctx, where: str, raw: Any) -> tuple[Artifact, ...]:
    if raw is None:
        return ()
    items = ctx.expect(where, raw, list, "a list of artifacts")
    out = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        body = ctx.expect(at, item, dict, "a mapping with URI")
        _check_keys(ctx, at, body, ("URI", "Digest", "Algorithm", "Unarchive", "Permission"))
        uri = ctx.expect(f"{at}.URI", get(body, "URI"), str, "an artifact URI")
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in _URI_SCHEMES:
            raise ctx.fail(f"{at}.URI", f"{uri!r} has no supported scheme; expected one of "
                           + ", ".join(f"{s}://" for s in _URI_SCHEMES))
        algorithm = str(get(body, "Algorithm") or "SHA-256").upper()
        if algorithm not in _ALGORITHMS:
            raise ctx.fail(f"{at}.Algorithm", f"expected one of {', '.join(_ALGORITHMS)}, "
                           f"got {algorithm!r}")
        digest = get(body, "Digest")
        if digest is not None:
            try:
                size = len(base64.b64decode(str(digest), validate=True))
            except (binascii.Error, ValueError):
                size = -1
            if size != _ALGORITHMS[algorithm]:
                raise ctx.fail(f"{at}.Digest", f"{digest!r} is not a base64 {algorithm} digest")
        unarchive = str(get(body, "Unarchive") or "NONE").upper()
        if unarchive not in ("NONE", "ZIP"):
            raise ctx.fail(f"{at}.Unarchive", f"expected NONE or ZIP, got {unarchive!r}")
        perm = ctx.mapping(f"{at}.Permission", get(body, "Permission"))
        _check_keys(ctx, f"{at}.Permission", perm, ("Read", "Execute"))
        values = {}
        for key, default in (("Read", "OWNER"), ("Execute", "NONE")):
            value = str(get(perm, key) or default).upper()
            if value not in ("NONE", "OWNER", "ALL"):
                raise ctx.fail(f"{at}.Permission.{key}",
                               f"expected NONE, OWNER or ALL, got {value!r}")
            values[key] = value
        artifact = Artifact(uri, str(digest) if digest is not None else None, algorithm,
                            unarchive, Permission(values["Read"], values["Execute"]))
        if artifact.filename in seen:
            raise ctx.fail(f"{at}.URI", f"two artifacts are named {artifact.filename!r}")
        seen.add(artifact.filename)
        out.append(artifact)
    return tuple(out)


def parse_recipe(data: Any, path: Path, device: Platform | None = None) -> Recipe:
    """Validate recipe data (already parsed from JSON/YAML) for ``device``."""
    ctx = _Ctx(path)
    device = device or detect_platform()
    ctx.expect("", data, dict, "a mapping at the top level")
    _check_keys(ctx, "", data, _TOP_KEYS)
    fmt = get(data, "RecipeFormatVersion")
    if str(fmt) != RECIPE_FORMAT:
        raise ctx.fail("RecipeFormatVersion", f"expected '{RECIPE_FORMAT}', got {fmt!r}")
    name = ctx.expect("ComponentName", get(data, "ComponentName"), str, "a component name")
    if not _NAME.fullmatch(name):
        raise ctx.fail("ComponentName", f"{name!r} is not a valid component name (letters, "
                       "digits, '.', '_' and '-', at most 128 characters)")
    version = get(data, "ComponentVersion")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version):
        raise ctx.fail("ComponentVersion", f"{version!r} is not a semantic version "
                       "(major.minor.patch); quote it in YAML")
    ctype = str(get(data, "ComponentType") or "aws.greengrass.generic")
    if ctype not in _TYPES:
        raise ctx.fail("ComponentType", f"expected one of {', '.join(_TYPES)}, got {ctype!r}")
    config = ctx.mapping("ComponentConfiguration", get(data, "ComponentConfiguration"))
    _check_keys(ctx, "ComponentConfiguration", config, ("DefaultConfiguration",))
    default = ctx.mapping("ComponentConfiguration.DefaultConfiguration",
                          get(config, "DefaultConfiguration"))
    dependencies = _dependencies(ctx, get(data, "ComponentDependencies"))
    if name in dependencies:
        raise ctx.fail(f"ComponentDependencies.{name}", "a component cannot depend on itself")
    global_lifecycle = get(data, "Lifecycle")
    if global_lifecycle is not None:
        ctx.expect("Lifecycle", global_lifecycle, dict, "a mapping")
    manifests = get(data, "Manifests")
    if manifests is None:
        manifests = []
    ctx.expect("Manifests", manifests, list, "a list of manifests")
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    artifacts: tuple[Artifact, ...] = ()
    chosen = None
    for i, manifest in enumerate(manifests):
        where = f"Manifests[{i}]"
        ctx.expect(where, manifest, dict, "a mapping")
        _check_keys(ctx, where, manifest, ("Platform", "Name", "Lifecycle", "Selections",
                                           "Artifacts"))
        wanted = ctx.mapping(f"{where}.Platform", get(manifest, "Platform"))
        for key, value in wanted.items():
            problem = check_platform_value(str(value))
            if problem:
                raise ctx.fail(f"{where}.Platform.{key}", problem)
        # Validate every manifest, use the first that matches.
        lifecycle = get(manifest, "Lifecycle")
        parsed = _lifecycle(ctx, f"{where}.Lifecycle", lifecycle) if lifecycle is not None \
            else None
        arts = _artifacts(ctx, f"{where}.Artifacts", get(manifest, "Artifacts"))
        selections = get(manifest, "Selections")
        if selections is not None:
            ctx.expect(f"{where}.Selections", selections, list, "a list of selection names")
        if chosen is None and platform_matches(wanted, device):
            chosen = i
            artifacts = arts
            if parsed is not None:
                steps, setenv = parsed
            elif global_lifecycle is not None:
                steps, setenv = _select(ctx, global_lifecycle, selections or ["all"])
    if manifests and chosen is None:
        raise ctx.fail("Manifests", f"no manifest matches this device's platform "
                       f"({device.label}); add a manifest for it or use os: '*'")
    if not manifests and global_lifecycle is not None:
        steps, setenv = _select(ctx, global_lifecycle, ["all"])
    return Recipe(path=path, name=name, version=version,
                  description=str(get(data, "ComponentDescription") or ""),
                  publisher=str(get(data, "ComponentPublisher") or ""), component_type=ctype,
                  default_configuration=default, dependencies=dependencies, lifecycle=steps,
                  setenv=setenv, artifacts=artifacts, platform=device.label, raw=data)


def _select(ctx: _Ctx, lifecycle: dict[str, Any], selections: list[Any]
            ) -> tuple[dict[str, Step], dict[str, str]]:
    """Global Lifecycle: either the steps themselves, or keyed by selection names.

    It counts as keyed by selections only when a manifest names selections or a
    key is ``all``; otherwise its keys must be steps (so a typo is an error).
    """
    keys = {str(k).lower() for k in lifecycle}
    named = {str(s).lower() for s in selections} - {"all"}
    if keys & {*LIFECYCLE_STEPS, "setenv"} or not (named or "all" in keys):
        return _lifecycle(ctx, "Lifecycle", lifecycle)
    for selection in selections:
        body = get(lifecycle, str(selection))
        if body is not None:
            return _lifecycle(ctx, f"Lifecycle.{selection}", body)
    return {}, {}


def load_recipe(path: str | Path, device: Platform | None = None) -> Recipe:
    """Load a JSON or YAML recipe file; raises :class:`RecipeError` naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RecipeError(f"{path}: not valid JSON: {exc}") from None
    else:
        import yaml  # on first use (start-up time)

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_recipe(data, path, device)


def load_recipe_dir(folder: Path, device: Platform | None = None) -> dict[str, list[Recipe]]:
    """Every recipe in a folder (``*.yaml``, ``*.yml``, ``*.json``), by component name."""
    if not folder.is_dir():
        raise RecipeError(f"{folder}: recipe folder not found (give --recipeDir)")
    device = device or detect_platform()
    found: dict[str, list[Recipe]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
            recipe = load_recipe(path, device)
            found.setdefault(recipe.name, []).append(recipe)
    return found
