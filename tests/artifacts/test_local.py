"""Local artifacts (``file://``, paths, a local deployment's artifact folder), the recipe
fields' checks, permissions, progress bars and what a failed or cancelled fetch leaves."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import anyio
import pytest

from actors.artifacts import (
    Access,
    ArtifactNotFound,
    ArtifactSpec,
    ArtifactSpecError,
    ArtifactStore,
    DigestMismatch,
    Permission,
    S3Settings,
    progress_bar,
)

from .conftest import dead_endpoint, files_under, recipe_digest

pytestmark = pytest.mark.anyio


def source(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "source" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_file_uri_with_permissions(tmp_path: Path) -> None:
    script = source(tmp_path, "run.sh", b"#!/bin/sh\necho hi\n")
    spec = ArtifactSpec(script.as_uri(), recipe_digest(script.read_bytes()),
                        permission=Permission(read=Access.ALL, execute=Access.ALL))
    async with ArtifactStore(tmp_path / "store") as store:
        fetched = await store.fetch("com.example.Hello", "1.0.0", [spec])
    installed = fetched.files[spec.uri]
    assert installed.read_bytes() == script.read_bytes()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o555
    assert stat.S_IMODE(fetched.path.stat().st_mode) == 0o555


async def test_local_deployment_artifact_dir_is_used_before_s3(tmp_path: Path) -> None:
    artifact_dir = tmp_path / "artifacts"
    local = artifact_dir / "com.example.Hello" / "1.0.0" / "hello.py"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"print('hi')\n")
    specs = [ArtifactSpec("s3://some-bucket/artifacts/hello.py"), ArtifactSpec("relative.txt")]
    (local.parent / "relative.txt").write_text("x")
    # Nothing listens on the endpoint: the local files must be all that is read.
    async with ArtifactStore(tmp_path / "store",
                             S3Settings(endpoint_url=dead_endpoint(), attempts=1)) as store:
        fetched = await store.fetch("com.example.Hello", "1.0.0", specs,
                                    artifact_dir=artifact_dir)
    assert fetched.files[specs[0].uri].read_bytes() == b"print('hi')\n"
    assert fetched.statistics.requests == 0


@pytest.mark.parametrize(("spec", "match"), [
    (ArtifactSpec("file:///x/a.bin", digest="not base64!"), "not the base64 of a SHA-256"),
    (ArtifactSpec("file:///x/a.bin", digest="AAAA"), "not the base64 of a SHA-256"),
    (ArtifactSpec("file:///x/a.bin", digest=recipe_digest(b""), algorithm="CRC32"),
     "Algorithm 'CRC32' is not supported"),
    (ArtifactSpec("s3://bucket-only"), "expected s3://bucket/key"),
    (ArtifactSpec("s3://Bad_Bucket/k.bin"), "not a valid S3 bucket name"),
    (ArtifactSpec("https://example.invalid/a.bin"), "expected s3://bucket/key, file:///path"),
    (ArtifactSpec("relative/path.bin"), "with an artifact directory"),
])
async def test_bad_artifact_fields_are_refused_up_front(tmp_path: Path, spec: ArtifactSpec,
                                                        match: str) -> None:
    async with ArtifactStore(tmp_path) as store:
        with pytest.raises(ArtifactSpecError, match=match):
            await store.fetch("com.example.Hello", "1.0.0", [spec])
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(("component", "version"), [("../escape", "1.0.0"),
                                                   ("com.example.Hello", "../../x"),
                                                   ("com.example.Hello\n", "1.0.0"),
                                                   ("com.example.Hello", "1.0.0\n")])
async def test_component_names_cannot_leave_the_store(tmp_path: Path, component: str,
                                                      version: str) -> None:
    async with ArtifactStore(tmp_path / "store") as store:
        with pytest.raises(ArtifactSpecError, match="names a folder"):
            await store.fetch(component, version, [])
    assert files_under(tmp_path) == []


async def test_two_artifacts_with_one_file_name(tmp_path: Path) -> None:
    async with ArtifactStore(tmp_path) as store:
        with pytest.raises(ArtifactSpecError, match="cannot share"):
            await store.fetch("com.example.Hello", "1.0.0",
                              [ArtifactSpec("file:///a/m.bin"), ArtifactSpec("file:///b/m.bin")])


async def test_missing_local_file_names_it(tmp_path: Path) -> None:
    async with ArtifactStore(tmp_path / "store") as store:
        with pytest.raises(ArtifactNotFound, match=r"no such file .*gone\.bin"):
            await store.fetch("com.example.Hello", "1.0.0",
                              [ArtifactSpec((tmp_path / "gone.bin").as_uri())])
    assert files_under(tmp_path / "store") == []


async def test_redeploying_a_changed_list_replaces_the_folder(tmp_path: Path) -> None:
    a, b = source(tmp_path, "a.bin", b"a"), source(tmp_path, "b.bin", b"b")
    async with ArtifactStore(tmp_path / "store") as store:
        await store.fetch("com.example.Hello", "1.0.0",
                          [ArtifactSpec(a.as_uri(), recipe_digest(b"a"))])
        fetched = await store.fetch("com.example.Hello", "1.0.0",
                                    [ArtifactSpec(b.as_uri(), recipe_digest(b"b"))])
    assert sorted(p.name for p in fetched.path.iterdir()) == ["b.bin"]


async def test_failed_redeployment_keeps_what_was_installed(tmp_path: Path) -> None:
    a = source(tmp_path, "a.bin", b"a")
    async with ArtifactStore(tmp_path / "store") as store:
        first = await store.fetch("com.example.Hello", "1.0.0",
                                  [ArtifactSpec(a.as_uri(), recipe_digest(b"a"))])
        before = files_under(tmp_path / "store")
        with pytest.raises(DigestMismatch):
            await store.fetch("com.example.Hello", "1.0.0",
                              [ArtifactSpec(a.as_uri(), recipe_digest(b"other"))])
    assert files_under(tmp_path / "store") == before
    assert first.files[a.as_uri()].read_bytes() == b"a"


async def test_cancelled_fetch_leaves_nothing(tmp_path: Path) -> None:
    big = source(tmp_path, "big.bin", bytes(64 << 20))
    async with ArtifactStore(tmp_path / "store") as store:
        with anyio.move_on_after(0.01):
            await store.fetch("com.example.Hello", "1.0.0", [ArtifactSpec(big.as_uri())])
    assert files_under(tmp_path / "store") == []


async def test_progress_bar_renders_each_artifact(tmp_path: Path) -> None:
    from rich.console import Console

    a = source(tmp_path, "model.bin", b"m" * 1000)
    out = io.StringIO()
    async with ArtifactStore(tmp_path / "store") as store:
        with progress_bar(Console(file=out, width=120, force_terminal=False)) as on_progress:
            await store.fetch("com.example.Hello", "1.0.0",
                              [ArtifactSpec(a.as_uri(), recipe_digest(b"m" * 1000))],
                              progress=on_progress)
    assert "com.example.Hello" in out.getvalue()
