"""Crash-safe JSON files: a write is whole or absent, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from ..kernel import ActorsError


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash at any point leaves either the old
    file or the new one: temp file in the same folder, fsync, rename, fsync folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # A write or fsync error (ENOSPC, EIO) names no file: name the one meant.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateError(ActorsError, RuntimeError):
    """A state file exists but cannot be read: names it and what to do."""


class JsonStore:
    """One JSON document on disk, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, default: Any = None) -> Any:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return default
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StateError(
                f"{self.path}: the state file is not valid JSON ({exc}); it was not written "
                "by edge-actors' atomic writer: restore it from a backup or remove it"
            ) from None

    def save(self, value: Any) -> None:
        atomic_write(self.path, orjson.dumps(value, option=orjson.OPT_INDENT_2
                                             | orjson.OPT_SORT_KEYS))

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
