"""A temporary file that hashes what is written to it, fed from the event loop, written in a thread.

Network reads and disk writes overlap: the download hands chunks to a writer
task that runs each write (and the hash update) in a worker thread, so the
event loop never blocks on the disk and the next read starts at once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import anyio
from anyio.abc import ObjectSendStream

from ._digest import Digest

WRITEBACK_EVERY = 8 << 20
"""Bytes written between two requests to start writing a download in progress to disk."""

_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` (not in :mod:`os`), or None where libc lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", function)


_start_writeback = _sync_file_range()


class HashingFile:
    """A new file at ``path`` opened for writing, with a running hash of what went in."""

    def __init__(self, path: Path, algorithm: str) -> None:
        self.path = path
        self._hasher = hashlib.new(algorithm)
        self._algorithm = algorithm
        self._file = path.open("xb")
        self.size = 0
        self._synced = 0

    def write_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self._file.write(part)
            self._hasher.update(part)
            self.size += len(part)
        if _start_writeback is not None and self.size - self._synced >= WRITEBACK_EVERY:
            # Start writing to disk as we go without waiting for it (fdatasync here would
            # stall the pipeline), so the final fsync has only the tail left to wait for.
            self._file.flush()
            _start_writeback(self._file.fileno(), self._synced, self.size - self._synced,
                             _SYNC_FILE_RANGE_WRITE)
            self._synced = self.size

    def finish(self) -> Digest:
        """Flush to stable storage (the rename that follows must not publish a hole) and close."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return Digest(self._algorithm, self._hasher.digest())

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def first_error(error: BaseException) -> BaseException:
    """The one real error inside a task group's exception group (cancellations aside)."""
    while isinstance(error, BaseExceptionGroup):
        cancelled = anyio.get_cancelled_exc_class()
        inner = [e for e in error.exceptions if not isinstance(e, cancelled)] or list(
            error.exceptions)
        error = inner[0]
    return error


@asynccontextmanager
async def feeding(target: HashingFile) -> AsyncIterator[
        Callable[[list[bytes]], Awaitable[None]]]:
    """Yield ``feed(parts)``: queue parts for the writer thread; on exit wait until all are written.

    Errors from either side come out as themselves, not as an exception group.
    """
    send: ObjectSendStream[list[bytes]]
    send, receive = anyio.create_memory_object_stream[list[bytes]](2)

    async def writer() -> None:
        async with receive:
            async for parts in receive:
                await anyio.to_thread.run_sync(target.write_parts, parts)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer)
            async with send:
                yield send.send
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
