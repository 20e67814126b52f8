"""Throttling from a real S3 server: moto behind a real HTTP proxy (on 127.0.0.1) that
answers S3's ``503 SlowDown`` for the first requests of a download. The download waits,
retries and completes with the right digest; when the throttling never stops it gives up
after the bounded number of attempts with an error naming the object."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.artifacts import ArtifactSpec, ArtifactStore, DownloadFailed

from .conftest import BUCKET, FaultyProxy, MiB, S3Server, files_under, pattern, recipe_digest

pytestmark = pytest.mark.anyio

FAST = {"backoff": 0.01, "backoff_max": 0.05}


def put(server: S3Server, key: str, data: bytes) -> str:
    server.client().put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


async def test_download_waits_out_slowdown_and_completes(
        faulty: tuple[FaultyProxy, S3Server], moto: S3Server, tmp_path: Path) -> None:
    proxy, through = faulty
    data = pattern(3 * MiB)
    uri = put(moto, "throttled/once.bin", data)
    proxy.throttle(BUCKET, "throttled/once.bin", times=3)
    async with ArtifactStore(tmp_path, through.settings(attempts=5, **FAST)) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))])
    assert fetched.files[uri].read_bytes() == data
    assert proxy.throttled[f"/{BUCKET}/throttled/once.bin"] == 3
    assert fetched.statistics.retries == 3
    assert fetched.statistics.bytes_downloaded == len(data)


async def test_slowdown_on_the_object_body_is_retried(
        faulty: tuple[FaultyProxy, S3Server], moto: S3Server, tmp_path: Path) -> None:
    proxy, through = faulty
    data = pattern(2 * MiB)
    uri = put(moto, "throttled/get.bin", data)
    proxy.throttle(BUCKET, "throttled/get.bin", times=2, methods=("GET",))
    async with ArtifactStore(tmp_path, through.settings(attempts=3, **FAST)) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))])
    assert fetched.files[uri].read_bytes() == data
    assert fetched.statistics.retries == 2


@pytest.mark.parametrize("methods", [("GET", "HEAD"), ("GET",)], ids=["head", "get"])
async def test_endless_slowdown_gives_up_after_the_bounded_attempts(
        faulty: tuple[FaultyProxy, S3Server], moto: S3Server, tmp_path: Path,
        methods: tuple[str, ...]) -> None:
    proxy, through = faulty
    key = f"throttled/forever-{methods[-1].lower()}.bin"
    data = pattern(MiB)
    uri = put(moto, key, data)
    proxy.throttle(BUCKET, key, methods=methods)
    async with ArtifactStore(tmp_path, through.settings(attempts=4, **FAST)) as store:
        with pytest.raises(DownloadFailed) as caught:
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(uri, recipe_digest(data))])
    message = str(caught.value)
    assert uri in message
    assert "gave up after 4 failed attempts" in message
    assert "throttl" in message.lower()
    # Bounded: exactly the attempts allowed, no retries nested inside retries.
    assert proxy.throttled[f"/{BUCKET}/{key}"] == 4
    assert isinstance(caught.value, ConnectionError)
    assert files_under(tmp_path) == []
