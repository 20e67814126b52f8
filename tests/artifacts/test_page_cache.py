"""A download holds a bounded window of page cache: bytes hashed and on disk leave the
cache as the download goes on, in one stream and with ranged GETs side by side (the
window is made small here so a few MiB cross it many times); the digest and the
content stay exact. Residency is read with mincore(2) on the stored file."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

from actors.artifacts import ArtifactSpec, ArtifactStore, _sink

from .conftest import BUCKET, MiB, S3Server, pattern, recipe_digest

pytestmark = pytest.mark.anyio

SIZE = 24 * MiB + 4321
WINDOW = MiB
_libc = ctypes.CDLL(None, use_errno=True)


def resident(path: Path) -> list[bool]:
    """For each page of ``path``, whether it is in the page cache (mincore on a mapping)."""
    size = path.stat().st_size
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size,
                                              access=mmap.ACCESS_COPY) as mapping:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = (ctypes.c_ubyte * pages)()
        start = ctypes.c_char.from_buffer(mapping)
        try:
            if _libc.mincore(ctypes.c_void_p(ctypes.addressof(start)),
                             ctypes.c_size_t(size), vector):
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del start  # the mapping cannot close while a ctypes object views it
        return [bool(v & 1) for v in vector]


@pytest.fixture
def small_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _sink._start_writeback is None or not hasattr(os, "posix_fadvise"):
        pytest.skip("no sync_file_range/posix_fadvise on this platform")
    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * MiB)
    with open(probe, "rb") as file:
        os.fsync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if any(resident(probe)):
        pytest.skip(f"{tmp_path}'s file system keeps written pages cached (tmpfs?)")
    probe.unlink()
    monkeypatch.setattr(_sink, "CACHE_WINDOW", WINDOW)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_download_keeps_a_bounded_window_of_page_cache(
        small_window: None, moto: S3Server, tmp_path: Path, concurrency: int) -> None:
    data = pattern(SIZE, b"window")
    key = f"window/model-{concurrency}.bin"
    moto.client().put_object(Bucket=BUCKET, Key=key, Body=data)
    uri = f"s3://{BUCKET}/{key}"
    settings = moto.settings(part_size=MiB, chunk_size=256 << 10, concurrency=concurrency)
    async with ArtifactStore(tmp_path / "store", settings) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))])
    path = fetched.files[uri]
    pages = resident(path)  # before anything reads the file back
    page = mmap.PAGESIZE
    # Everything more than the window (plus the step it is released in, its 2 MiB
    # alignment and the last parts in flight) behind the end left the cache.
    tail = 3 * WINDOW + 2 * MiB + concurrency * MiB
    released = (SIZE - tail) // page
    assert released > len(pages) // 2
    assert not any(pages[:released]), [i for i, p in enumerate(pages[:released]) if p]
    assert sum(pages) * page <= tail
    assert path.read_bytes() == data
