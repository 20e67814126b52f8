"""Large objects as ranged GETs side by side, through a real HTTP proxy in front of moto
that cuts connections, throttles or drops the Range header: every byte arrives once, the
digest matches, and each range resumes where its connection broke."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.artifacts import ArtifactSpec, ArtifactStore, Progress

from .conftest import BUCKET, Faults, FaultyProxy, MiB, S3Server, pattern, recipe_digest

pytestmark = pytest.mark.anyio

SIZE = 9 * MiB + 12345
PARTS = {"part_size": MiB, "chunk_size": 256 << 10, "concurrency": 4,
         "backoff": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def big(moto: S3Server) -> tuple[str, bytes]:
    data = pattern(SIZE, b"ranges")
    moto.client().put_object(Bucket=BUCKET, Key="ranges/model.bin", Body=data)
    return "ranges/model.bin", data


async def fetch(server: S3Server, root: Path, key: str, data: bytes,
                reports: list[Progress] | None = None, **settings: object) -> object:
    uri = f"s3://{BUCKET}/{key}"
    async with ArtifactStore(root, server.settings(**{**PARTS, **settings})) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))],
                                    progress=None if reports is None else reports.append)
    assert fetched.files[uri].read_bytes() == data
    # Every byte was fetched once, whatever happened on the way.
    assert fetched.statistics.bytes_downloaded == len(data)
    return fetched.statistics


async def test_large_object_arrives_as_ranged_gets_side_by_side(
        faulty: tuple[FaultyProxy, S3Server], big: tuple[str, bytes], tmp_path: Path) -> None:
    proxy, through = faulty
    key, data = big
    proxy.inject(BUCKET, key, Faults())
    reports: list[Progress] = []
    stats = await fetch(through, tmp_path, key, data, reports)
    ranges = proxy.ranges[f"/{BUCKET}/{key}"]
    assert ranges[0] == f"bytes=0-{MiB - 1}"
    assert sorted(ranges) == sorted(
        f"bytes={a}-{min(a + MiB, SIZE) - 1}" for a in range(0, SIZE, MiB))
    assert stats.requests == 1 + len(ranges)  # HeadObject, then one GET per part
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert reports[-1].finished and reports[-1].done == SIZE


async def test_ranges_resume_where_their_connections_broke(
        faulty: tuple[FaultyProxy, S3Server], big: tuple[str, bytes], tmp_path: Path) -> None:
    proxy, through = faulty
    key, data = big
    # The first range's answer goes through; then three answers break after 300 KB.
    proxy.inject(BUCKET, key, Faults(frozenset({"GET"}), pass_first=1, cut=3,
                                     cut_after=300_000))
    stats = await fetch(through, tmp_path, key, data)
    assert proxy.cut[f"/{BUCKET}/{key}"] == 3
    assert stats.resumed >= 1 and stats.retries == 3
    # A resumed range starts in the middle of a part, where its connection broke.
    assert any(int(r.split("=")[1].split("-")[0]) % MiB
               for r in proxy.ranges[f"/{BUCKET}/{key}"])


async def test_throttling_while_ranges_run_side_by_side(
        faulty: tuple[FaultyProxy, S3Server], big: tuple[str, bytes], tmp_path: Path) -> None:
    proxy, through = faulty
    key, data = big
    proxy.throttle(BUCKET, key, times=3, methods=("GET",), pass_first=2)
    stats = await fetch(through, tmp_path, key, data)
    assert proxy.throttled[f"/{BUCKET}/{key}"] == 3 and stats.retries == 3


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_server_that_ignores_range_is_read_as_one_stream(
        faulty: tuple[FaultyProxy, S3Server], big: tuple[str, bytes], tmp_path: Path,
        concurrency: int) -> None:
    proxy, through = faulty
    key, data = big
    # Range dropped: every answer is 200 with the whole object, even for a resumed one.
    proxy.inject(BUCKET, key, Faults(frozenset({"GET"}), cut=1, cut_after=2 * MiB + 7,
                                     ignore_range=True))
    stats = await fetch(through, tmp_path, key, data, concurrency=concurrency)
    assert len(proxy.ranges[f"/{BUCKET}/{key}"]) == 2  # the broken stream and its resumption
    assert stats.resumed == 1
