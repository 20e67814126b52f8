"""The component registry on S3 (SeaweedFS): publish, list, immutability, resolution."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.fleet import ComponentVersionExists, Registry, RegistryError

from .conftest import write
from .servers import RegistryServer

pytestmark = pytest.mark.anyio


def model_recipe(folder: Path, version: str, *, depends: str = "") -> Path:
    deps = f"""
ComponentDependencies:
  test.Runtime:
    VersionRequirement: "{depends}"
""" if depends else ""
    return write(folder / f"test.Model-{version}.yaml", f"""\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.Model
ComponentVersion: '{version}'
{deps}
Manifests:
  - Platform: {{os: linux}}
    Lifecycle:
      Run: cat {{artifacts:path}}/labels.txt
    Artifacts:
      - URI: s3://some-bucket/anywhere/labels.txt
      - Uri: s3://some-bucket/model.bin
  - Platform: {{os: linux, architecture: arm}}
    Lifecycle:
      Run: cat {{artifacts:path}}/labels.txt
    Artifacts:
      - URI: s3://some-bucket/anywhere/labels.txt
""")


def artifacts(folder: Path, version: str) -> Path:
    write(folder / "test.Model" / version / "labels.txt", f"cat\ndog {version}\n")
    (folder / "model.bin").write_bytes(b"\x00\x01" * 1000)
    return folder


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def test_publish_uploads_artifacts_fills_digests_and_rewrites_uris(
        tmp_path: Path, registry_server: RegistryServer, registry_url: str) -> None:
    recipe = model_recipe(tmp_path / "recipes", "1.0.0")
    arts = artifacts(tmp_path / "build", "1.0.0")
    async with Registry(registry_url, registry_server.settings()) as registry:
        published = await registry.publish(recipe, arts)
        assert (published.name, published.version) == ("test.Model", "1.0.0")
        stored = await registry.recipe("test.Model", "1.0.0")
        assert await registry.components() == {"test.Model": ["1.0.0"]}
    prefix = registry_url[len("s3://fleet/"):]
    base = f"{registry_url}/components/test.Model/1.0.0/artifacts"
    linux, arm = stored["Manifests"]
    assert linux["Artifacts"] == [
        {"Uri": f"{base}/labels.txt", "Digest": b64sha256(b"cat\ndog 1.0.0\n"),
         "Algorithm": "SHA-256"},
        {"Uri": f"{base}/model.bin", "Digest": b64sha256(b"\x00\x01" * 1000),
         "Algorithm": "SHA-256"}]
    assert arm["Artifacts"] == linux["Artifacts"][:1]
    body = registry_server.client().get_object(
        Bucket="fleet", Key=f"{prefix}/components/test.Model/1.0.0/artifacts/labels.txt")
    assert body["Body"].read() == b"cat\ndog 1.0.0\n"


async def test_a_published_version_is_immutable(
        tmp_path: Path, registry_server: RegistryServer, registry_url: str) -> None:
    recipe = model_recipe(tmp_path / "recipes", "1.0.0")
    arts = artifacts(tmp_path / "build", "1.0.0")
    async with Registry(registry_url, registry_server.settings()) as registry:
        await registry.publish(recipe, arts)
        before = await registry.recipe("test.Model", "1.0.0")
        write(arts / "test.Model" / "1.0.0" / "labels.txt", "changed\n")
        with pytest.raises(ComponentVersionExists, match="test.Model 1.0.0 is already in the "
                           "registry .*versions are immutable"):
            await registry.publish(recipe, arts)
        assert await registry.recipe("test.Model", "1.0.0") == before
        # The artifact was not replaced either.
        labels = before["Manifests"][0]["Artifacts"][0]["Uri"]
        key = labels[len("s3://fleet/"):]
        assert registry_server.client().get_object(
            Bucket="fleet", Key=key)["Body"].read() == b"cat\ndog 1.0.0\n"


async def test_a_missing_artifact_is_named_and_nothing_is_listed(
        tmp_path: Path, registry_server: RegistryServer, registry_url: str) -> None:
    recipe = model_recipe(tmp_path / "recipes", "1.0.0")
    (tmp_path / "empty").mkdir()
    async with Registry(registry_url, registry_server.settings()) as registry:
        with pytest.raises(RegistryError, match=r"Manifests\[0\]\.Artifacts\[0\]: no file for "
                           r"s3://some-bucket/anywhere/labels.txt: looked for .*"
                           r"test.Model/1.0.0/labels.txt"):
            await registry.publish(recipe, tmp_path / "empty")
        assert await registry.components() == {}


async def test_device_credentials_read_but_cannot_publish(
        tmp_path: Path, registry_server: RegistryServer, registry_url: str) -> None:
    recipe = model_recipe(tmp_path / "recipes", "1.0.0")
    arts = artifacts(tmp_path / "build", "1.0.0")
    async with Registry(registry_url, registry_server.settings()) as registry:
        await registry.publish(recipe, arts)
    device = registry_server.settings(registry_server.device)
    async with Registry(registry_url, device) as registry:
        assert (await registry.recipe("test.Model", "1.0.0"))["ComponentVersion"] == "1.0.0"
        with pytest.raises(RegistryError, match="access denied"):
            await registry.publish(model_recipe(tmp_path / "recipes", "2.0.0"),
                                   artifacts(arts, "2.0.0"))


async def test_closure_resolves_dependencies_from_the_registry(
        tmp_path: Path, registry_server: RegistryServer, registry_url: str) -> None:
    runtime = """\
RecipeFormatVersion: '2020-01-25'
ComponentName: test.Runtime
ComponentVersion: '{v}'
Manifests:
  - Platform: {{os: '*'}}
    Lifecycle: {{Run: 'true'}}
"""
    async with Registry(registry_url, registry_server.settings()) as registry:
        for v in ("1.0.0", "1.2.0", "2.0.0"):
            await registry.publish(write(tmp_path / f"r{v}.yaml", runtime.format(v=v)), None)
        await registry.publish(model_recipe(tmp_path / "recipes", "1.0.0", depends="^1.0.0"),
                               artifacts(tmp_path / "build", "1.0.0"))
        chosen = await registry.closure({"test.Model": "1.0.0"})
    assert {n: r["ComponentVersion"] for n, r in chosen.items()} == {
        "test.Model": "1.0.0", "test.Runtime": "1.2.0"}


def test_cli_publish_and_list(tmp_path: Path, registry_server: RegistryServer,
                              registry_url: str) -> None:
    recipe = model_recipe(tmp_path / "recipes", "1.0.0")
    arts = artifacts(tmp_path / "build", "1.0.0")
    env = {"PATH": "/usr/bin:/bin", **registry_server.environment()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "actors", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    done = cli("component", "publish", "--recipe", str(recipe), "--artifacts", str(arts),
               "--registry", registry_url)
    assert done.returncode == 0, done.stderr
    assert f"published test.Model 1.0.0: {registry_url}/components/test.Model/1.0.0/" \
        "recipe.json" in done.stdout
    again = cli("component", "publish", "--recipe", str(recipe), "--artifacts", str(arts),
                "--registry", registry_url)
    assert again.returncode == 1
    assert "versions are immutable" in again.stderr
    listed = cli("component", "list", "--registry", registry_url)
    assert listed.stdout.splitlines() == ["test.Model  1.0.0"]
    grouped = cli("fleet", "group", "add", "line-1", "thing-a", "thing-b", "--registry",
                  registry_url)
    assert grouped.returncode == 0, grouped.stderr
    assert json.loads(json.dumps(cli("fleet", "group", "list", "--registry",
                                     registry_url).stdout.split())) == [
        "thinggroup/line-1", "thing-a", "thing-b"]
