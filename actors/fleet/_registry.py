"""The component registry on S3: published component versions, thing groups, deployments.

Layout under ``s3://bucket/prefix`` (every document JSON)::

    components/<name>/<version>/recipe.json        the recipe as published: each artifact's
                                                   Uri points into the registry, its Digest
                                                   and Algorithm filled in
    components/<name>/<version>/artifacts/<file>   the artifacts, as uploaded
    thinggroups/<group>.json                       {"thingGroupName", "things": [...]}
    deployments/<id>/deployment.json               the deployment document (what devices read)
    deployments/<id>/status.json                   the controller's last view of its rollout
    targets/<thinggroup|thing>/<name>.json         {"deploymentId"}: the target's current one

A component version is immutable, as in Greengrass: its recipe is written last
(so a version is listed only once every artifact is there) and never replaced;
publishing it again is refused. Devices need only read access (GetObject) to
``components/`` and ``deployments/``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson

from ..artifacts import S3Settings
from ..recipe import Platform, Recipe, RecipeError, get, load_recipe, parse_recipe
from ._errors import ComponentVersionExists, NotInRegistry, RegistryError
from ._s3 import RegistryUrl, S3Client, error_code, http_status

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PublishedComponent:
    name: str
    version: str
    recipe_uri: str
    artifacts: tuple[str, ...]  # their registry URIs


def _check_name(what: str, value: str) -> str:
    if not _NAME.match(value) or ".." in value:
        raise RegistryError(f"{what} {value!r}: expected letters, digits, '.', '_' and '-'")
    return value


def any_platform(data: Mapping[str, Any]) -> Platform:
    """A platform the recipe's first manifest matches (its literal values), for checks
    made away from the device (publishing, resolving in the controller): a recipe
    meant for other devices is still valid here."""
    from ..recipe import detect_platform

    manifests = get(data, "Manifests") if isinstance(data, Mapping) else None
    if not isinstance(manifests, list) or not manifests or not isinstance(manifests[0], dict):
        return detect_platform()
    wanted = get(manifests[0], "Platform") or {}
    literal = {str(k): str(v) for k, v in wanted.items()
               if not str(v).startswith("/") and str(v) not in ("*", "all", "any")}
    return detect_platform(literal)


def parse_anywhere(data: Any, where: str) -> Recipe:
    platform = any_platform(data) if isinstance(data, Mapping) else None
    return parse_recipe(data, Path(where), platform)


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return base64.b64encode(hasher.digest()).decode()


class Registry:
    """``async with Registry(url, settings) as registry``: the registry at ``url``."""

    def __init__(self, url: RegistryUrl | str, settings: S3Settings | None = None) -> None:
        self.url = RegistryUrl.parse(url) if isinstance(url, str) else url
        self.s3 = S3Client(settings)

    async def __aenter__(self) -> Registry:
        await self.s3.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.s3.__aexit__(*exc_info)

    @property
    def requests(self) -> int:
        """S3 requests made so far."""
        return self.s3.requests

    # -- objects -----------------------------------------------------------

    async def get_json(self, key: str) -> Any:
        """The JSON document at ``key``; raises NotInRegistry when it is absent."""
        try:
            answer = await self.s3.call("get_object", Bucket=self.url.bucket, Key=key)
            async with answer["Body"] as body:
                data = await body.read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404") or http_status(exc) == 404:
                raise NotInRegistry(f"s3://{self.url.bucket}/{key} does not exist") from None
            raise self._failed("read", key, exc) from exc
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"s3://{self.url.bucket}/{key}: not valid JSON ({exc})"
                                ) from None

    async def put_json(self, key: str, data: Any, *, create_only: bool = False) -> None:
        await self._put(key, orjson.dumps(data, option=orjson.OPT_INDENT_2),
                        create_only=create_only)

    async def _put(self, key: str, body: bytes, *, create_only: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            await self.s3.call("put_object", Bucket=self.url.bucket, Key=key, Body=body,
                               ContentType="application/json", **extra)
        except Exception as exc:
            if create_only and (error_code(exc) in ("PreconditionFailed",
                                                    "ConditionalRequestConflict")
                                or http_status(exc) in (409, 412)):
                raise ComponentVersionExists(f"s3://{self.url.bucket}/{key} already exists"
                                             ) from None
            raise self._failed("write", key, exc) from exc

    async def exists(self, key: str) -> bool:
        try:
            await self.s3.call("head_object", Bucket=self.url.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound") or http_status(exc) == 404:
                return False
            raise self._failed("read", key, exc) from exc
        return True

    async def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages)."""
        out: list[str] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            try:
                page = await self.s3.call("list_objects_v2", Bucket=self.url.bucket,
                                          Prefix=prefix, **extra)
            except Exception as exc:
                raise self._failed("list", prefix, exc) from exc
            out += [item["Key"] for item in page.get("Contents", ())]
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    def _failed(self, what: str, key: str, exc: Exception) -> RegistryError:
        code = error_code(exc)
        if code in ("AccessDenied", "403") or http_status(exc) == 403:
            return RegistryError(f"s3://{self.url.bucket}/{key}: access denied ({what}); "
                                 "these credentials may not " + what + " the registry")
        return RegistryError(f"s3://{self.url.bucket}/{key}: cannot {what}: {exc}")

    # -- components --------------------------------------------------------

    def recipe_key(self, name: str, version: str) -> str:
        return self.url.key("components", name, version, "recipe.json")

    async def publish(self, recipe_file: Path, artifacts_dir: Path | None
                      ) -> PublishedComponent:
        """Upload a component version: its artifacts, then its recipe with each artifact's
        Uri pointing into the registry and its Digest and Algorithm filled in.

        Artifacts are found as ``<artifacts_dir>/<name>/<version>/<file>`` (the layout of
        ``--artifactDir`` and of the GDK's build folder) or ``<artifacts_dir>/<file>``,
        ``<file>`` being the last segment of the recipe's Uri. Raises
        :class:`ComponentVersionExists` when the version is already published."""
        recipe = await anyio.to_thread.run_sync(self._load_for_publish, recipe_file)
        name, version = recipe.name, recipe.version
        _check_name("component name", name)
        _check_name(f"{name}: component version", version)
        key = self.recipe_key(name, version)
        if await self.exists(key):
            raise ComponentVersionExists(
                f"{recipe_file}: {name} {version} is already in the registry "
                f"({self.url.uri('components', name, version)}); versions are immutable: "
                "raise ComponentVersion and publish again")
        data = orjson.loads(orjson.dumps(recipe.raw))  # a deep, JSON-only copy
        uploads: dict[str, Path] = {}
        manifests = get(data, "Manifests") or []
        for i, manifest in enumerate(manifests):
            for j, artifact in enumerate(get(manifest, "Artifacts") or []):
                where = f"{recipe_file}: Manifests[{i}].Artifacts[{j}]"
                uri = str(get(artifact, "URI"))
                filename = uri.rstrip("/").rsplit("/", 1)[-1]
                _check_name(f"{where}: artifact file name", filename)
                source = self._find_artifact(artifacts_dir, name, version, filename)
                if source is None:
                    raise RegistryError(
                        f"{where}: no file for {uri}: looked for "
                        + (f"{artifacts_dir}/{name}/{version}/{filename} and "
                           f"{artifacts_dir}/{filename}" if artifacts_dir is not None else
                           "it without --artifacts") + "; build it or give --artifacts")
                digest = await anyio.to_thread.run_sync(_digest, source)
                for k in [k for k in artifact if k.lower() in ("uri", "digest", "algorithm")]:
                    del artifact[k]
                artifact.update({"Uri": self.url.uri("components", name, version, "artifacts",
                                                     filename),
                                 "Digest": digest, "Algorithm": "SHA-256"})
                uploads[filename] = source
        for filename, source in uploads.items():
            body = await anyio.to_thread.run_sync(source.read_bytes)
            await self._put_bytes(self.url.key("components", name, version, "artifacts",
                                               filename), body)
        parse_anywhere(data, str(recipe_file))  # what is written still validates
        try:
            await self.put_json(key, data, create_only=True)
        except ComponentVersionExists:
            raise ComponentVersionExists(
                f"{recipe_file}: {name} {version} was published meanwhile by someone else; "
                "versions are immutable: raise ComponentVersion and publish again") from None
        return PublishedComponent(name, version, f"s3://{self.url.bucket}/{key}",
                                  tuple(self.url.uri("components", name, version, "artifacts", f)
                                        for f in uploads))

    async def _put_bytes(self, key: str, body: bytes) -> None:
        try:
            await self.s3.call("put_object", Bucket=self.url.bucket, Key=key, Body=body)
        except Exception as exc:
            raise self._failed("write", key, exc) from exc

    @staticmethod
    def _load_for_publish(path: Path) -> Recipe:
        recipe = load_recipe(path, _platform_of_file(path))
        return recipe

    @staticmethod
    def _find_artifact(folder: Path | None, name: str, version: str, filename: str
                       ) -> Path | None:
        if folder is None:
            return None
        for candidate in (folder / name / version / filename, folder / filename):
            if candidate.is_file():
                return candidate
        return None

    async def components(self) -> dict[str, list[str]]:
        """Every published component: name -> versions, lowest first."""
        from semantic_version import Version

        out: dict[str, list[str]] = {}
        prefix = self.url.key("components") + "/"
        for key in await self.keys(prefix):
            parts = key[len(prefix):].split("/")
            if len(parts) == 3 and parts[2] == "recipe.json":
                out.setdefault(parts[0], []).append(parts[1])
        for versions in out.values():
            versions.sort(key=Version)
        return dict(sorted(out.items()))

    async def versions(self, name: str) -> list[str]:
        prefix = self.url.key("components", name) + "/"
        found = [k[len(prefix):].split("/") for k in await self.keys(prefix)]
        return [p[0] for p in found if len(p) == 2 and p[1] == "recipe.json"]

    async def recipe(self, name: str, version: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = await self.get_json(self.recipe_key(name, version))
        except NotInRegistry:
            raise NotInRegistry(f"{name} {version} is not in the registry {self.url}; "
                                "publish it with `edge-actors component publish`") from None
        return data

    async def closure(self, roots: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """The recipes a deployment of ``roots`` needs: each root at its version and its
        dependencies, resolved as the device does (highest version satisfying every
        requirement). Returns name -> recipe document. Raises ResolutionError."""
        from ..deploy import resolve

        available: dict[str, list[Recipe]] = {}
        raw: dict[tuple[str, str], dict[str, Any]] = {}
        pending = list(roots)
        while pending:
            name = pending.pop()
            if name in available:
                continue
            available[name] = []
            versions = await self.versions(name)
            if not versions and name in roots:
                raise NotInRegistry(f"component {name} is not in the registry {self.url}; "
                                    "publish it with `edge-actors component publish`")
            for version in versions:
                data = await self.recipe(name, version)
                try:
                    recipe = parse_anywhere(data, self.url.uri("components", name, version,
                                                               "recipe.json"))
                except RecipeError as exc:
                    raise RegistryError(str(exc)) from None
                available[name].append(recipe)
                raw[(name, version)] = data
                pending += [d for d in recipe.dependencies if d not in available]
        chosen = resolve({"deployment": dict(roots)}, available)
        return {name: raw[(name, recipe.version)] for name, recipe in chosen.items()}

    # -- thing groups ------------------------------------------------------

    def group_key(self, group: str) -> str:
        return self.url.key("thinggroups", f"{_check_name('thing group', group)}.json")

    async def group(self, group: str) -> list[str]:
        """The things in a thing group ([] for a group that does not exist)."""
        try:
            data = await self.get_json(self.group_key(group))
        except NotInRegistry:
            return []
        return list(data.get("things", []))

    async def add_to_group(self, group: str, things: Iterable[str]) -> list[str]:
        members = await self.group(group)
        for thing in things:
            _check_name("thing name", thing)
            if thing not in members:
                members.append(thing)
        await self.put_json(self.group_key(group), {"thingGroupName": group,
                                                    "things": members})
        return members

    async def remove_from_group(self, group: str, things: Iterable[str]) -> list[str]:
        gone = set(things)
        members = [t for t in await self.group(group) if t not in gone]
        await self.put_json(self.group_key(group), {"thingGroupName": group,
                                                    "things": members})
        return members

    async def groups(self) -> dict[str, list[str]]:
        prefix = self.url.key("thinggroups") + "/"
        out = {}
        for key in await self.keys(prefix):
            name = key[len(prefix):]
            if name.endswith(".json") and "/" not in name:
                out[name[:-5]] = await self.group(name[:-5])
        return out

    # -- deployments -------------------------------------------------------

    def document_key(self, deployment_id: str) -> str:
        return self.url.key("deployments", _check_name("deployment id", deployment_id),
                            "deployment.json")

    def status_key(self, deployment_id: str) -> str:
        return self.url.key("deployments", _check_name("deployment id", deployment_id),
                            "status.json")

    def cancel_key(self, deployment_id: str) -> str:
        """Where ``fleet cancel`` records that a deployment was canceled."""
        return self.url.key("deployments", _check_name("deployment id", deployment_id),
                            "canceled.json")

    def target_key(self, target: str) -> str:
        kind, _, name = target.partition("/")
        return self.url.key("targets", kind, f"{_check_name('target', name)}.json")

    async def document(self, deployment_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = await self.get_json(self.document_key(deployment_id))
        except NotInRegistry:
            raise NotInRegistry(f"deployment {deployment_id} is not in the registry "
                                f"{self.url}") from None
        return data


def _platform_of_file(path: Path) -> Platform | None:
    """The platform to validate a recipe file against when publishing (see any_platform)."""
    try:
        text = path.read_bytes()
        if path.suffix.lower() == ".json":
            data = orjson.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception:
        return None  # load_recipe then reports what is wrong with the file
    return any_platform(data) if isinstance(data, Mapping) else None
