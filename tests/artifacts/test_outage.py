"""A server outage longer than a few seconds: the download waits it out, retrying with
backoff for the configured window, and resumes each range where it stopped; past the
window it gives up with an error that says so."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from actors.artifacts import ArtifactSpec, ArtifactStore, DownloadFailed, Progress, S3Settings

from .conftest import (
    BUCKET,
    Faults,
    FaultyProxy,
    MiB,
    S3Server,
    dead_endpoint,
    pattern,
    recipe_digest,
)

pytestmark = pytest.mark.anyio

OUTAGE = 4.0  # seconds: longer than the 3-4 s after which downloads used to give up


async def test_a_download_waits_out_a_server_outage_and_resumes(
        faulty: tuple[FaultyProxy, S3Server], tmp_path: Path) -> None:
    proxy, through = faulty
    data = pattern(6 * MiB + 789, b"outage")
    key = "outage/model.bin"
    through.client().put_object(Bucket=BUCKET, Key=key, Body=data)
    proxy.inject(BUCKET, key, Faults())
    uri = f"s3://{BUCKET}/{key}"
    gone = anyio.Event()
    back_at: list[float] = []

    def on_progress(report: Progress) -> None:
        if not gone.is_set() and report.done >= 2 * MiB:
            proxy.go_away()  # mid-download, before another byte is fetched
            gone.set()

    async def outage() -> None:
        await gone.wait()
        await anyio.sleep(OUTAGE)
        proxy.come_back()
        back_at.append(time.monotonic())

    # A short window keeps the test short.
    settings = through.settings(part_size=MiB, chunk_size=256 << 10, concurrency=2,
                                backoff=0.2, backoff_max=1.0, retry_window=30.0)
    async with ArtifactStore(tmp_path, settings) as store, anyio.create_task_group() as group:
        group.start_soon(outage)
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))],
                                    progress=on_progress)
        finished = time.monotonic()
    assert back_at and finished > back_at[0], "the download finished before the outage ended"
    assert fetched.files[uri].read_bytes() == data
    stats = fetched.statistics
    assert stats.retries >= 2
    # Resumed, not started again: no byte fetched twice.
    assert stats.bytes_downloaded == len(data)


async def test_past_the_retry_window_a_download_gives_up_saying_so(tmp_path: Path) -> None:
    assert S3Settings().retry_window >= 60 and S3Settings().attempts is None  # minutes
    settings = S3Settings(endpoint_url=dead_endpoint(), region="us-east-1",
                          access_key_id="k", secret_access_key="s", backoff=0.05,
                          backoff_max=0.2, retry_window=1.5)
    started = time.monotonic()
    async with ArtifactStore(tmp_path, settings) as store:
        with pytest.raises(DownloadFailed, match=r"over 1\.[0-9] s: .*retry_window"):
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(f"s3://{BUCKET}/never/there.bin")])
    assert 1.4 < time.monotonic() - started < 10

