"""``Unarchive: ZIP`` done safely: every entry is checked before anything is written.

Refused, with the entry named: absolute names and ``..`` (the entry would land
outside the folder), symbolic links whose target leaves the folder, device
files and FIFOs, a name given twice (or as both a file and a folder), and
bombs: more uncompressed bytes than allowed, or an uncompressed/compressed
ratio above the limit. The byte count is enforced while writing too, so a
header that lies about sizes does not get past it.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ._errors import UnsafeArchive

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class UnarchiveLimits:
    """What an archive may expand to: bytes in total, compression ratio, number of entries.

    The ratio applies only past ``ratio_floor`` uncompressed bytes: small text
    files compress very well and are no threat.
    """

    max_bytes: int = 16 << 30
    max_ratio: float = 100.0
    ratio_floor: int = 16 << 20
    max_entries: int = 100_000


@dataclass(frozen=True, slots=True)
class _Entry:
    info: zipfile.ZipInfo
    name: str
    kind: str  # "file", "dir" or "link"


def _refuse(uri: str, why: str) -> UnsafeArchive:
    return UnsafeArchive(f"archive {uri}: {why}; the archive was not extracted (rebuild it "
                         "without such entries)")


def _entries(archive: zipfile.ZipFile, archive_size: int, limits: UnarchiveLimits,
             uri: str) -> list[_Entry]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise _refuse(uri, f"{len(infos)} entries, more than the limit of {limits.max_entries}")
    entries: list[_Entry] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        raw = info.filename.replace("\\", "/")
        if raw.startswith("/") or _DRIVE.match(raw):
            raise _refuse(uri, f"entry {info.filename!r} has an absolute path")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise _refuse(uri, f"entry {info.filename!r} escapes the folder with '..'")
        if not parts:
            continue
        name = "/".join(parts)
        mode = info.external_attr >> 16
        kind_bits = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            kind = "link"
        elif info.is_dir() or stat.S_ISDIR(mode):
            kind = "dir"
        elif kind_bits in (0, stat.S_IFREG):
            kind = "file"
        else:
            raise _refuse(uri, f"entry {info.filename!r} is a special file (mode {mode:o})")
        if name in seen:
            raise _refuse(uri, f"entry {name!r} appears more than once")
        seen.add(name)
        total += info.file_size
        if total > limits.max_bytes:
            raise _refuse(uri, f"it expands to more than {limits.max_bytes} bytes (a ZIP bomb?)")
        entries.append(_Entry(info, name, kind))
    parents = {posixpath.dirname(e.name) for e in entries}
    parents = {p for parent in parents for p in _prefixes(parent)}
    for entry in entries:
        if entry.kind != "dir" and entry.name in parents:
            raise _refuse(uri, f"entry {entry.name!r} is both a file and a folder")
    if total > limits.ratio_floor and total > limits.max_ratio * max(archive_size, 1):
        raise _refuse(uri, f"it expands {total / max(archive_size, 1):.0f}-fold ({total} bytes "
                           f"from {archive_size}), more than the limit of {limits.max_ratio:g} "
                           "(a ZIP bomb?)")
    return entries


def _prefixes(path: str) -> list[str]:
    out = []
    while path:
        out.append(path)
        path = posixpath.dirname(path)
    return out


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def extract_zip(archive_path: Path, target: Path, file_mode: int, limits: UnarchiveLimits,
                uri: str) -> None:
    """Extract ``archive_path`` into the new folder ``target`` (blocking: run it in a thread).

    Files get ``file_mode``; folders are made read-only. On error ``target`` may
    hold a partial extraction: the caller removes it.
    """
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"archive {uri}: not a valid ZIP archive ({exc}); check the "
                            "recipe's Unarchive field and the file") from None
    with archive:
        entries = _entries(archive, archive_path.stat().st_size, limits, uri)
        target.mkdir(parents=True)
        written = 0
        links: list[tuple[_Entry, str]] = []
        # Folders and files first, links last: no write can go through a link.
        for entry in entries:
            destination = target / entry.name
            if entry.kind == "dir":
                destination.mkdir(parents=True, exist_ok=True)
            elif entry.kind == "link":
                link = archive.read(entry.info)[:4096].decode("utf-8", "surrogateescape")
                if link.startswith("/") or _DRIVE.match(link):
                    raise _refuse(uri, f"symbolic link {entry.name!r} points to the absolute "
                                       f"path {link!r}")
                lexical = posixpath.normpath(posixpath.join(posixpath.dirname(entry.name), link))
                if lexical == ".." or lexical.startswith("../"):
                    raise _refuse(uri, f"symbolic link {entry.name!r} points outside the "
                                       f"folder ({link!r})")
                links.append((entry, link))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                written = _write(archive, entry, destination, written, limits, uri)
                destination.chmod(file_mode)
        for entry, link in links:
            destination = target / entry.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, destination)
        # A chain of links can leave the folder even when each looks fine alone.
        for entry, link in links:
            if not _inside(target, target / entry.name):
                raise _refuse(uri, f"symbolic link {entry.name!r} points outside the folder "
                                   f"({link!r})")
    make_read_only(target, file_mode)


def _write(archive: zipfile.ZipFile, entry: _Entry, destination: Path, written: int,
           limits: UnarchiveLimits, uri: str) -> int:
    try:
        with archive.open(entry.info) as source, destination.open("xb") as out:
            while block := source.read(1 << 20):
                written += len(block)
                if written > limits.max_bytes:
                    raise _refuse(uri, f"it expands to more than {limits.max_bytes} bytes "
                                       "(a ZIP bomb?)")
                out.write(block)
    except FileExistsError:
        raise _refuse(uri, f"entry {entry.name!r} appears more than once") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise UnsafeArchive(f"archive {uri}: entry {entry.name!r} cannot be read ({exc}); "
                            "the archive is corrupt or uses an unsupported method") from None
    return written


def folder_mode(file_mode: int) -> int:
    """Read-only folders: the owner may list and enter them; others too if files are for all."""
    return 0o500 | (0o055 if file_mode & 0o004 else 0)


def make_read_only(root: Path, file_mode: int) -> None:
    """Set every folder under ``root`` (and ``root``) read-only, deepest first (blocking)."""
    mode = folder_mode(file_mode)
    for dirpath, _dirnames, _files in os.walk(root, topdown=False):
        os.chmod(dirpath, mode)


def force_rmtree(path: Path) -> None:
    """Remove a tree even when its folders are read-only (blocking)."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for dirpath, _dirnames, _files in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)
