"""Loading and validating recipes: one error naming the file, the key path and
what is expected; never a traceback, never a half-loaded recipe.

What Greengrass accepts is accepted (checked key by key against the nucleus's
recipe model and the recipe reference): the recipe is judged on its own, not
against the machine that reads it (a recipe for other platforms is valid, with
a warning). Keys Greengrass does not know are refused as typos (Greengrass
would ignore them silently), and files past the limits below are refused
before they are parsed any further.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import difflib
import logging
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
    timeout_seconds,
)
from ._platform import Platform, check_platform_value, detect_platform, platform_matches
from ._semver import npm_range

log = logging.getLogger("actors.recipe")

#: Limits on what a recipe file may hold; past them it is refused with a clear
#: error (a hostile or broken file must not exhaust the runtime's stack or memory).
MAX_RECIPE_BYTES = 1 << 20  # a real recipe is a few kilobytes
MAX_DEPTH = 64  # nested mappings and lists
MAX_VALUES = 100_000  # every value, counting each use of a YAML alias
MAX_DEPENDENCIES = 1_000
MAX_MANIFESTS = 100
MAX_ARTIFACTS = 1_000

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOP_KEYS = ("RecipeFormatVersion", "ComponentName", "ComponentVersion", "ComponentType",
             "ComponentDescription", "ComponentPublisher", "ComponentSource",
             "ComponentConfiguration", "ComponentDependencies", "Manifests", "Lifecycle")
_TYPES = ("aws.greengrass.generic", "aws.greengrass.lambda", "aws.greengrass.plugin",
          "aws.greengrass.nucleus")
#: Greengrass's artifact URI schemes; ``file`` is this project's own addition
#: (local files, for development and tests).
_URI_SCHEMES = ("s3", "greengrass", "docker")
_OWN_SCHEMES = ("file",)
_ALGORITHMS = {"SHA-256": 32, "SHA-384": 48, "SHA-512": 64}
_STEP_KEYS = ("Script", "Timeout", "RequiresPrivilege", "Setenv", "Skipif")
_BOOTSTRAP_KEYS = (*_STEP_KEYS, "BootstrapOnRollback")
_LIFECYCLE_KEYS = ("Setenv", "Bootstrap", "Install", "Startup", "Run", "Shutdown", "Recover",
                   "Uninstall", "ErrorResetTime")
# Coerce.toBoolean's words in the nucleus (anything else it reads as false; we refuse it).
_TRUE = ("true", "yes", "on", "t", "y", "1")
_FALSE = ("false", "no", "off", "f", "n", "0")
_VARIABLE = re.compile(r"\{[^{}]*:[^{}]*\}")
# docker:[registry/]image[:tag|@digest], the nucleus's DockerImageArtifactParser grammar.
_DOMAIN = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                     r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?")
_IMAGE_PATH = re.compile(r"[a-z0-9]+(?:(?:[_.]|__|-*)[a-z0-9]+)*"
                         r"(?:/[a-z0-9]+(?:(?:[_.]|__|-*)[a-z0-9]+)*)*")
_IMAGE_TAG = re.compile(r"\w[\w.-]{0,127}")
_IMAGE_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{32,}")


class _Ctx:
    """Where we are in which file: builds errors that name both."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.warnings: list[str] = []

    def fail(self, where: str, problem: str) -> RecipeError:
        prefix = f"{self.path}: {where}" if where else str(self.path)
        return RecipeError(f"{prefix}: {problem}")

    def warn(self, where: str, problem: str) -> None:
        self.warnings.append(str(self.fail(where, problem)))

    def expect(self, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            shown = "nothing" if value is None else f"{type(value).__name__} {_short(value)}"
            raise self.fail(where, f"expected {what}, got {shown}")
        return value

    def mapping(self, where: str, value: Any, what: str = "a mapping") -> dict[Any, Any]:
        if value is None:
            return {}
        return dict(self.expect(where, value, dict, what))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _short(value: Any, limit: int = 200) -> str:
    """``repr`` for an error message, cut short (a value may be a whole subtree)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


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
    key = str(key)[:100]
    lowered = key.lower()
    close = [k for k in known if len(lowered) >= 3 and k.lower().startswith(lowered)] or \
        difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; expected one of {', '.join(known)}"
    if not close and where == "Lifecycle":  # the global Lifecycle: a selection name?
        hint += " (or, for a selection, name it in a manifest's Selections)"
    return ctx.fail(f"{where}.{key}" if where else key, f"unknown key{hint}")


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
            raise ctx.fail(f"{where}.{key}", f"expected a string value, got {_short(value)}")
        out[str(key)] = str(value)
    return out


def _flag(ctx: _Ctx, where: str, value: Any) -> bool:
    """A boolean as the nucleus reads one (true/false, yes/no, on/off, 1/0)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ctx.fail(where, f"expected true or false, got {_short(value)}")


def _timeout(ctx: _Ctx, where: str, value: Any) -> float | str | None:
    """Seconds (a number, or a text holding one, as the nucleus reads it); or a text
    with recipe variables, read as a number when the step runs."""
    if value is None:
        return None
    if isinstance(value, str) and _VARIABLE.search(value):
        return value
    seconds = timeout_seconds(value)
    if seconds is not None:
        return seconds
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        raise ctx.fail(where, f"expected a positive number of seconds, got {_short(value)}")
    raise ctx.fail(where, "expected a number of seconds (or a recipe variable such as "
                   f"{{configuration:/timeout}}), got {type(value).__name__} {_short(value)}")


def _step(ctx: _Ctx, where: str, raw: Any, bootstrap: bool = False) -> Step:
    if isinstance(raw, str):
        return Step(raw)
    step = ctx.expect(where, raw, dict, "a script string or a mapping with Script")
    _check_keys(ctx, where, step, _BOOTSTRAP_KEYS if bootstrap else _STEP_KEYS)
    script = ctx.expect(f"{where}.Script", get(step, "Script"), str, "a script string")
    timeout = _timeout(ctx, f"{where}.Timeout", get(step, "Timeout"))
    privilege = _flag(ctx, f"{where}.RequiresPrivilege", get(step, "RequiresPrivilege"))
    skipif, negated = None, False
    raw_skip = get(step, "Skipif")
    if raw_skip is not None:
        ctx.expect(f"{where}.Skipif", raw_skip, str, "'onpath <executable>' or 'exists <file>'")
        expression = raw_skip.strip()
        if expression.startswith("!"):  # the nucleus's negation: skip unless found
            negated, expression = True, expression[1:].strip()
        kind, _, target = expression.partition(" ")
        if kind.lower() not in ("onpath", "exists") or not target.strip():
            raise ctx.fail(f"{where}.Skipif",
                           f"expected 'onpath <executable>' or 'exists <file>', got {raw_skip!r}")
        skipif = (kind.lower(), target.strip())
    rollback = _flag(ctx, f"{where}.BootstrapOnRollback", get(step, "BootstrapOnRollback"))
    return Step(script, timeout, privilege, _env(ctx, f"{where}.Setenv", get(step, "Setenv")),
                skipif, negated, rollback)


def _lifecycle(ctx: _Ctx, where: str, raw: Any
               ) -> tuple[dict[str, Step], dict[str, str], float | None]:
    body = ctx.expect(where, raw, dict, "a mapping of lifecycle steps")
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    reset: float | None = None
    for key, value in body.items():
        name = str(key).lower()
        if name == "setenv":
            setenv = _env(ctx, f"{where}.{key}", value)
        elif name == "errorresettime":
            reset = timeout_seconds(value)
            if reset is None:
                raise ctx.fail(f"{where}.{key}", "expected a positive number of seconds, got "
                               f"{_short(value)}")
        elif name in LIFECYCLE_STEPS:
            steps[name] = _step(ctx, f"{where}.{key}", value, bootstrap=name == "bootstrap")
        else:
            raise _unknown(ctx, where, key, _LIFECYCLE_KEYS)
    if "startup" in steps and "run" in steps:
        raise ctx.fail(where, "give Startup or Run, not both")
    return steps, setenv, reset


def _dependencies(ctx: _Ctx, raw: Any) -> dict[str, Dependency]:
    deps = ctx.mapping("ComponentDependencies", raw, "a mapping of component names")
    if len(deps) > MAX_DEPENDENCIES:
        raise ctx.fail("ComponentDependencies", f"{len(deps):,} dependencies; at most "
                       f"{MAX_DEPENDENCIES:,} are allowed")
    out = {}
    for name, spec in deps.items():
        where = f"ComponentDependencies.{name}"
        body = ctx.expect(where, spec, dict, "a mapping with VersionRequirement")
        _check_keys(ctx, where, body, ("VersionRequirement", "DependencyType"))
        requirement = get(body, "VersionRequirement")
        if requirement is None:
            requirement = "*"
        written = str(requirement).strip()
        try:
            requirement = npm_range(written)
        except ValueError:
            raise ctx.fail(f"{where}.VersionRequirement",
                           f"{written[:100]!r} is not a semver range") from None
        kind = str(get(body, "DependencyType") or "HARD").upper()
        if kind not in ("HARD", "SOFT"):
            raise ctx.fail(f"{where}.DependencyType",
                           f"expected HARD or SOFT, got {kind[:100]!r}")
        out[str(name)] = Dependency(str(name), requirement, DependencyType(kind))
    return out


def _uri(ctx: _Ctx, where: str, uri: str) -> None:
    """Greengrass's URI forms: ``s3://bucket/key``, ``greengrass:Name`` (``//`` optional),
    ``docker:[registry/]image[:tag|@digest]``; and ``file:///path`` (ours)."""
    scheme, colon, rest = uri.partition(":")
    scheme = scheme.lower() if colon else ""
    if scheme not in (*_URI_SCHEMES, *_OWN_SCHEMES):
        raise ctx.fail(where, f"{uri[:200]!r} has no supported scheme; expected s3://bucket/key, "
                       "greengrass:<file>, docker:<image> or (this runtime's own) "
                       "file:///path")
    if scheme == "s3":
        bucket, _, key = rest.removeprefix("//").partition("/")
        if not rest.startswith("//") or not bucket or not key.strip("/"):
            raise ctx.fail(where, f"{uri[:200]!r}: expected s3://bucket/key")
    elif scheme == "docker":
        problem = _docker_problem(rest)
        if problem:
            raise ctx.fail(where, f"{uri[:200]!r}: {problem}; expected "
                           "docker:[registry/]image[:tag|@digest]")
    elif not rest.strip("/").rsplit("/", 1)[-1]:
        raise ctx.fail(where, f"{uri[:200]!r} names no file")


def _docker_problem(reference: str) -> str | None:
    """Why a docker: image reference is not one the nucleus accepts, or None."""
    if "/" in reference:
        registry, _, reference = reference.partition("/")
        if not reference or not _DOMAIN.fullmatch(registry):
            return f"{registry!r} is not a registry host"
    name, tag, digest = reference, None, None
    if "@" in reference:
        name, _, digest = reference.partition("@")
    elif ":" in reference:
        name, _, tag = reference.partition(":")
    if digest is not None and not _IMAGE_DIGEST.fullmatch(digest):
        return f"{digest!r} is not an image digest (algorithm:hex)"
    if tag is not None and not _IMAGE_TAG.fullmatch(tag):
        return f"{tag!r} is not an image tag"
    if not _IMAGE_PATH.fullmatch(name):
        return f"{name!r} is not an image name (lower-case letters, digits, '.', '_', '-', '/')"
    return None


def _artifacts(ctx: _Ctx, where: str, raw: Any) -> tuple[Artifact, ...]:
    if raw is None:
        return ()
    items = ctx.expect(where, raw, list, "a list of artifacts")
    if len(items) > MAX_ARTIFACTS:
        raise ctx.fail(where, f"{len(items):,} artifacts; at most {MAX_ARTIFACTS:,} are allowed")
    out = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        body = ctx.expect(at, item, dict, "a mapping with URI")
        _check_keys(ctx, at, body, ("URI", "Digest", "Algorithm", "Unarchive", "Permission"))
        uri = ctx.expect(f"{at}.URI", get(body, "URI"), str, "an artifact URI")
        _uri(ctx, f"{at}.URI", uri)
        algorithm = str(get(body, "Algorithm") or "SHA-256").upper()
        if algorithm not in _ALGORITHMS:
            raise ctx.fail(f"{at}.Algorithm", f"expected one of {', '.join(_ALGORITHMS)}, "
                           f"got {algorithm[:100]!r}")
        digest = get(body, "Digest")
        if digest is not None:
            digest = _digest(ctx, f"{at}.Digest", str(digest), algorithm)
        unarchive = str(get(body, "Unarchive") or "NONE").upper()
        if unarchive not in ("NONE", "ZIP"):
            raise ctx.fail(f"{at}.Unarchive", f"expected NONE or ZIP, got {unarchive[:100]!r}")
        perm = ctx.mapping(f"{at}.Permission", get(body, "Permission"))
        _check_keys(ctx, f"{at}.Permission", perm, ("Read", "Execute"))
        values = {}
        for key, default in (("Read", "OWNER"), ("Execute", "NONE")):
            value = str(get(perm, key) or default).upper()
            if value not in ("NONE", "OWNER", "ALL"):
                raise ctx.fail(f"{at}.Permission.{key}",
                               f"expected NONE, OWNER or ALL, got {value[:100]!r}")
            values[key] = value
        artifact = Artifact(uri, str(digest) if digest is not None else None, algorithm,
                            unarchive, Permission(values["Read"], values["Execute"]))
        if artifact.filename in seen:
            raise ctx.fail(f"{at}.URI", f"two artifacts are named {artifact.filename!r}")
        seen.add(artifact.filename)
        out.append(artifact)
    return tuple(out)


def _digest(ctx: _Ctx, where: str, digest: str, algorithm: str) -> str | None:
    """A real digest (base64, as Greengrass writes it); None, with a warning, for a
    placeholder that publishing replaces (the cloud computes digests then). A real
    digest in the wrong form is refused: Greengrass would fail the download on it."""
    text = digest.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = None
    if raw is not None and len(raw) == _ALGORITHMS[algorithm]:
        return text
    sizes = {size: name for name, size in _ALGORITHMS.items()}
    # Hex first: 64 hex digits are also valid base64 (of 48 bytes).
    if re.fullmatch(r"[0-9a-fA-F]+", text) and len(text) // 2 in sizes and len(text) % 2 == 0:
        encoded = base64.b64encode(bytes.fromhex(text)).decode()
        raise ctx.fail(where, f"{text[:100]!r} is a hex digest; Greengrass writes Digest in "
                       f"base64: {encoded!r}")
    if raw is not None and len(raw) in sizes:
        raise ctx.fail(where, f"{text[:100]!r} is a base64 {sizes[len(raw)]} digest, but "
                       f"Algorithm is {algorithm}; make them agree")
    ctx.warn(where, f"{text[:100]!r} is not a base64 {algorithm} digest (a placeholder?); "
             "the artifact is not checked against it")
    return None


def _check_shape(ctx: _Ctx, data: Any) -> None:
    """Refuse data nested deeper than :data:`MAX_DEPTH` or holding more than
    :data:`MAX_VALUES` values (YAML aliases counted at each use): what the rest of
    the loader, and every later copy of the configuration, walk through."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ctx.fail("", f"the recipe holds more than {MAX_VALUES:,} values (counting "
                           "each use of a YAML alias); make it smaller")
        if isinstance(node, dict | list | tuple | set):
            if depth > MAX_DEPTH:
                raise ctx.fail("", f"the recipe nests mappings and lists deeper than "
                               f"{MAX_DEPTH} levels (or a YAML alias refers to itself); "
                               "flatten it")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def _plain(ctx: _Ctx, where: str, value: Any) -> Any:
    """Configuration as JSON holds it: string keys, lists, JSON scalars (dates as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(ctx, f"{where}.{k}", v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(ctx, f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ctx.fail(where, f"expected a JSON value, got {type(value).__name__}")


def _filter(node: Any, keywords: set[str], selections: list[str]) -> Any:
    """The nucleus's PlatformResolver.filterPlatform: at each level of the global
    Lifecycle, a mapping keyed by selection names is replaced by the entry of the
    first selection the manifest names (else ``all``); None when it has neither."""
    if not isinstance(node, dict):
        return node
    if any(isinstance(k, str) and k in keywords for k in node):
        for key in (*selections, "all"):
            if node.get(key) is not None:
                return _filter(node[key], keywords, selections)
        return None
    out = {}
    for key, value in node.items():
        filtered = _filter(value, keywords, selections)
        if filtered is not None:
            out[key] = filtered
    return out


def parse_recipe(data: Any, path: Path, device: Platform | None = None) -> Recipe:
    """Validate recipe data (already parsed from JSON/YAML) and resolve it for ``device``.

    Every manifest is checked, whichever matches. When none matches ``device``,
    the recipe is still valid (``matched`` is False, with a warning): it cannot
    be deployed there."""
    ctx = _Ctx(path)
    device = device or detect_platform()
    _check_shape(ctx, data)
    ctx.expect("", data, dict, "a mapping at the top level")
    _check_keys(ctx, "", data, _TOP_KEYS)
    fmt = get(data, "RecipeFormatVersion")
    if str(fmt) != RECIPE_FORMAT:
        raise ctx.fail("RecipeFormatVersion", f"expected '{RECIPE_FORMAT}', got {_short(fmt)}")
    name = ctx.expect("ComponentName", get(data, "ComponentName"), str, "a component name")
    if not _NAME.fullmatch(name):
        raise ctx.fail("ComponentName", f"{_short(name)} is not a valid component name (letters, "
                       "digits, '.', '_' and '-', at most 128 characters)")
    version = get(data, "ComponentVersion")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version):
        raise ctx.fail("ComponentVersion", f"{_short(version)} is not a semantic version "
                       "(major.minor.patch); quote it in YAML")
    # The limits of Greengrass's recipe model (component-common's ComponentRecipe).
    if len(version) > 64 or any(int(n) > 999_999 for n in
                                re.split(r"[-+]", version, maxsplit=1)[0].split(".")):
        raise ctx.fail("ComponentVersion", f"{_short(version)}: Greengrass allows at most 64 "
                       "characters and 6 digits in each of major, minor and patch")
    ctype = str(get(data, "ComponentType") or "aws.greengrass.generic")
    if ctype not in _TYPES:
        raise ctx.fail("ComponentType", f"expected one of {', '.join(_TYPES)}, "
                       f"got {_short(ctype)}")
    config = ctx.mapping("ComponentConfiguration", get(data, "ComponentConfiguration"))
    _check_keys(ctx, "ComponentConfiguration", config, ("DefaultConfiguration",))
    default = _plain(ctx, "ComponentConfiguration.DefaultConfiguration", ctx.mapping(
        "ComponentConfiguration.DefaultConfiguration", get(config, "DefaultConfiguration")))
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
    if len(manifests) > MAX_MANIFESTS:
        raise ctx.fail("Manifests", f"{len(manifests):,} manifests; at most {MAX_MANIFESTS} are "
                       "allowed")
    keywords = {"all"}
    for i, manifest in enumerate(manifests):
        selections = get(manifest, "Selections") if isinstance(manifest, dict) else None
        if selections is not None:
            ctx.expect(f"Manifests[{i}].Selections", selections, list,
                       "a list of selection names")
            keywords.update(str(s) for s in selections)
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    reset: float | None = None
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
        # Validate every manifest (whatever this machine is), use the first that matches.
        lifecycle = get(manifest, "Lifecycle")
        if lifecycle is not None and lifecycle != {}:
            parsed = _lifecycle(ctx, f"{where}.Lifecycle", lifecycle)
        else:
            selections = [str(s) for s in get(manifest, "Selections") or []]
            parsed = _global(ctx, global_lifecycle, keywords, selections)
        arts = _artifacts(ctx, f"{where}.Artifacts", get(manifest, "Artifacts"))
        if chosen is None and platform_matches(wanted, device):
            chosen = i
            artifacts = arts
            steps, setenv, reset = parsed
    if manifests and chosen is None:
        ctx.warn("Manifests", f"no manifest matches this device's platform ({device.label}); "
                 "it cannot be deployed here (add a manifest for it or use os: '*')")
    if not manifests:
        steps, setenv, reset = _global(ctx, global_lifecycle, keywords, [])
    return Recipe(path=path, name=name, version=version,
                  description=str(get(data, "ComponentDescription") or ""),
                  publisher=str(get(data, "ComponentPublisher") or ""), component_type=ctype,
                  default_configuration=default, dependencies=dependencies, lifecycle=steps,
                  setenv=setenv, artifacts=artifacts, platform=device.label, raw=data,
                  matched=not manifests or chosen is not None, warnings=tuple(ctx.warnings),
                  error_reset_time=reset)


def _global(ctx: _Ctx, lifecycle: dict[str, Any] | None, keywords: set[str],
            selections: list[str]) -> tuple[dict[str, Step], dict[str, str], float | None]:
    """The global Lifecycle as a manifest with ``selections`` sees it."""
    if lifecycle is None:
        return {}, {}, None
    filtered = _filter(lifecycle, keywords, selections)
    if not filtered:
        return {}, {}, None
    return _lifecycle(ctx, "Lifecycle", filtered)


def _yaml_loader() -> type:
    """A safe YAML loader that refuses nesting past :data:`MAX_DEPTH` while it composes
    (PyYAML composes recursively: a deep file would otherwise raise RecursionError)."""
    global _LOADER
    if _LOADER is None:
        import yaml  # on first use (start-up time)

        class Loader(yaml.SafeLoader):  # type: ignore[misc]
            _depth = 0

            def compose_node(self, parent: Any, index: Any) -> Any:
                self._depth += 1
                try:
                    if self._depth > MAX_DEPTH:
                        mark = self.peek_event().start_mark
                        raise _TooDeep(f"the recipe nests mappings and lists deeper than "
                                       f"{MAX_DEPTH} levels (line {mark.line + 1}, column "
                                       f"{mark.column + 1}); flatten it")
                    return super().compose_node(parent, index)
                finally:
                    self._depth -= 1

        _LOADER = Loader
    return _LOADER


class _TooDeep(Exception):
    pass


_LOADER: type | None = None


def load_recipe(path: str | Path, device: Platform | None = None) -> Recipe:
    """Load a JSON or YAML recipe file; raises :class:`RecipeError` naming what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc.strerror}") from None
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: the recipe is larger than {MAX_RECIPE_BYTES >> 10} KiB; "
                          "a recipe describes a component (put data in artifacts or in "
                          "configuration updates)")
    if path.suffix.lower() == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RecipeError(f"{path}: not valid JSON: {exc}") from None
    else:
        import yaml  # on first use (start-up time)

        try:
            data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader
        except _TooDeep as exc:
            raise RecipeError(f"{path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise RecipeError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a bad !!timestamp
            raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    return parse_recipe(data, path, device)


def load_recipe_dir(folder: Path, device: Platform | None = None) -> dict[str, list[Recipe]]:
    """Every recipe in a folder (``*.yaml``, ``*.yml``, ``*.json``), by component name.
    Warnings (a placeholder Digest, no manifest for this device) are logged."""
    if not folder.is_dir():
        raise RecipeError(f"{folder}: recipe folder not found (give --recipeDir)")
    device = device or detect_platform()
    found: dict[str, list[Recipe]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
            recipe = load_recipe(path, device)
            for warning in recipe.warnings:
                log.warning("%s", warning)
            found.setdefault(recipe.name, []).append(recipe)
    return found
