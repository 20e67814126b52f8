"""Against SeaweedFS (``weed mini`` on 127.0.0.1), which enforces SSE-C as S3 does and keeps
its objects on disk: the SSE-C rule, identities without read permission, and a download
that survives the server being killed and started again."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from actors.artifacts import (
    ArtifactAccessDenied,
    ArtifactSpec,
    ArtifactStore,
    Progress,
    UnsupportedEncryption,
)

from .conftest import BUCKET, MiB, S3Server, Weed, files_under, pattern, recipe_digest

pytestmark = pytest.mark.anyio


async def test_sse_c_object_is_refused_before_download(seaweed: S3Server,
                                                       tmp_path: Path) -> None:
    data = os.urandom(MiB)
    seaweed.client().put_object(Bucket=BUCKET, Key="ssec/model.bin", Body=data,
                                SSECustomerAlgorithm="AES256",
                                SSECustomerKey=os.urandom(32))
    uri = f"s3://{BUCKET}/ssec/model.bin"
    async with ArtifactStore(tmp_path, seaweed.settings()) as store:
        with pytest.raises(UnsupportedEncryption) as caught:
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(uri, recipe_digest(data))])
    assert str(caught.value) == (
        f"{uri} is encrypted with SSE-C (customer-provided keys), which is not supported for "
        "model sources; re-upload it with SSE-S3 or SSE-KMS")
    assert files_under(tmp_path) == []


async def test_identity_without_read_permission(seaweed: S3Server, tmp_path: Path) -> None:
    data = b"weights" * 100
    seaweed.client().put_object(Bucket=BUCKET, Key="private/model.bin", Body=data)
    uri = f"s3://{BUCKET}/private/model.bin"
    async with ArtifactStore(tmp_path, seaweed.settings(seaweed.no_read)) as store:
        with pytest.raises(ArtifactAccessDenied) as caught:
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(uri, recipe_digest(data))])
    message = str(caught.value)
    assert seaweed.no_read.access_key_id in message and "s3:GetObject" in message
    assert "private/model.bin" in message and BUCKET in message
    assert seaweed.no_read.secret_access_key not in message
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("concurrency", [1, 4], ids=["one-stream", "ranges"])
async def test_download_resumes_after_the_server_is_killed_and_restarted(
        weed: Weed, seaweed: S3Server, tmp_path: Path, concurrency: int) -> None:
    data = pattern(48 * MiB)
    seaweed.client().put_object(Bucket=BUCKET, Key="resume/model.bin", Body=data)
    uri = f"s3://{BUCKET}/resume/model.bin"
    killed = anyio.Event()

    def on_progress(report: Progress) -> None:
        # Kill it once a few MiB have arrived: SIGKILL closes its sockets at once.
        if not killed.is_set() and report.done >= 4 * MiB:
            weed.kill()
            killed.set()

    async def restart() -> None:
        await killed.wait()
        await anyio.sleep(0.3)
        await anyio.to_thread.run_sync(weed.start)

    # weed answers InternalError for a few seconds after a restart: allow for it.
    settings = seaweed.settings(attempts=40, backoff=0.2, backoff_max=0.5, chunk_size=MiB,
                                part_size=16 * MiB, concurrency=concurrency)
    async with ArtifactStore(tmp_path, settings) as store, anyio.create_task_group() as group:
        group.start_soon(restart)
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))],
                                    progress=on_progress)
    assert killed.is_set()
    assert fetched.files[uri].read_bytes() == data
    stats = fetched.statistics
    assert stats.retries >= 1
    if concurrency == 1:  # (side by side, the ranges cut may all have been just started)
        assert stats.resumed >= 1
    # Resumed, not started again: what was kept was not fetched twice.
    assert stats.bytes_downloaded == len(data)


async def test_large_object_in_parts_side_by_side(seaweed: S3Server, tmp_path: Path) -> None:
    data = pattern(40 * MiB + 1)
    seaweed.client().put_object(Bucket=BUCKET, Key="parts/model.bin", Body=data)
    uri = f"s3://{BUCKET}/parts/model.bin"
    settings = seaweed.settings(part_size=4 * MiB, concurrency=3)
    async with ArtifactStore(tmp_path, settings) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))])
    assert fetched.files[uri].read_bytes() == data
    assert fetched.statistics.requests == 1 + 11  # HeadObject, then 11 ranged GETs
