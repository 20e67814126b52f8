"""``Unarchive: ZIP``: good archives land in ``{artifacts:decompressedPath}/<stem>``; archives
that would escape the folder, repeat names or explode are refused and leave nothing."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from actors.artifacts import (
    ArtifactSpec,
    ArtifactStore,
    Unarchive,
    UnarchiveLimits,
    UnsafeArchive,
)

from .conftest import MiB, files_under, make_zip, recipe_digest

pytestmark = pytest.mark.anyio


async def fetch_zip(tmp_path: Path, archive: bytes, name: str = "bundle.zip",
                    limits: UnarchiveLimits | None = None) -> Path:
    source = tmp_path / "source" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(archive)
    async with ArtifactStore(tmp_path / "store", limits=limits) as store:
        fetched = await store.fetch(
            "com.example.Model", "1.0.0",
            [ArtifactSpec(source.as_uri(), recipe_digest(archive), unarchive=Unarchive.ZIP)])
    return fetched.decompressed_path / name.rsplit(".", 1)[0]


async def test_good_archive_with_an_inside_link(tmp_path: Path) -> None:
    archive = make_zip([("lib/model.so", b"\x7fELF"), ("lib/", b""), ("labels.txt", b"cat\n")],
                       links={"current": "lib/model.so", "lib/up": "../labels.txt"})
    folder = await fetch_zip(tmp_path, archive)
    assert (folder / "lib" / "model.so").read_bytes() == b"\x7fELF"
    assert (folder / "current").read_bytes() == b"\x7fELF"
    assert (folder / "lib" / "up").read_bytes() == b"cat\n"
    assert stat.S_IMODE((folder / "labels.txt").stat().st_mode) == 0o400
    assert stat.S_IMODE((folder / "lib").stat().st_mode) == 0o500


def _outside(tmp_path: Path) -> list[Path]:
    """Whatever is left besides the source archive: in the store, or written beside it."""
    return [p for p in files_under(tmp_path) if "source" not in p.relative_to(tmp_path).parts]


@pytest.mark.parametrize(("entries", "links", "reason"), [
    ([("../evil.sh", b"x")], None, "escapes the folder"),
    ([("ok.txt", b"x"), ("a/../../evil.sh", b"x")], None, "escapes the folder"),
    ([("/etc/evil.conf", b"x")], None, "absolute path"),
    ([("ok.txt", b"x")], {"link": "/etc/passwd"}, "absolute path"),
    ([("ok.txt", b"x")], {"link": "../../../etc"}, "points outside"),
    # each link looks inside on its own; together they reach the parent folder
    ([("ok.txt", b"x")], {"here": ".", "sneaky": "here/.."}, "points outside"),
    ([("model.bin", b"a"), ("model.bin", b"b")], None, "more than once"),
    ([("lib", b"a file"), ("lib/x.so", b"b")], None, "both a file and a folder"),
    ([("ok.txt", b"x")], {"ok.txt/x": "ok.txt"}, "both a file and a folder"),
], ids=["dotdot", "nested-dotdot", "absolute", "link-absolute", "link-dotdot", "link-chain",
        "duplicate", "file-and-folder", "link-through-file"])
async def test_unsafe_archives_are_refused_and_leave_nothing(
        tmp_path: Path, entries: list[tuple[str, bytes]], links: dict[str, str] | None,
        reason: str) -> None:
    with pytest.raises(UnsafeArchive, match=reason):
        await fetch_zip(tmp_path, make_zip(entries, links))
    assert _outside(tmp_path) == []
    assert not (tmp_path / "evil.sh").exists()


async def test_special_files_are_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("fifo")
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    info.create_system = 3
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, b"")
    with pytest.raises(UnsafeArchive, match="special file"):
        await fetch_zip(tmp_path, buffer.getvalue())
    assert _outside(tmp_path) == []


async def test_compression_bomb_is_refused_by_default(tmp_path: Path) -> None:
    bomb = make_zip([("zeros.bin", bytes(64 * MiB))])
    assert len(bomb) < MiB
    with pytest.raises(UnsafeArchive, match="fold.*ZIP bomb"):
        await fetch_zip(tmp_path, bomb)
    assert _outside(tmp_path) == []


async def test_size_limit(tmp_path: Path) -> None:
    archive = make_zip([(f"part{i}.bin", os.urandom(MiB)) for i in range(3)],
                       compression=zipfile.ZIP_STORED)
    with pytest.raises(UnsafeArchive, match="more than 2097152 bytes"):
        await fetch_zip(tmp_path, archive, limits=UnarchiveLimits(max_bytes=2 * MiB))
    assert _outside(tmp_path) == []


async def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="not a valid ZIP"):
        await fetch_zip(tmp_path, b"this is not a zip archive")
    assert _outside(tmp_path) == []
