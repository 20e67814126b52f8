"""The download's temporary file: written at offsets by several streams, hashed in order.

A download may arrive as several ranged GETs at once, so bytes reach the file
out of order; the digest needs them in order. The file is therefore written
with ``pwritev`` at each chunk's offset. A chunk that is the next one to hash
is hashed from memory by the thread that wrote it (one stream: every chunk);
the rest are caught up by a hasher that follows the *frontier* (the end of the
bytes written without a gap from the start), reading them back from the page
cache (7 GB/s here, against the 1.4 GB/s SHA-256 takes) in blocks of
:data:`HASH_BLOCK`. Memory stays bounded by the chunks in flight; nothing
waits for a whole part. Writes, read-backs and hashing run in worker threads,
never on the event loop.

The file is preallocated to the object's size (``posix_fallocate``): a disk
too small fails at once, before any byte is fetched, and ext4 writes into
preallocated blocks many times faster than it allocates them on the way.
Written bytes are sent to disk as they come (``sync_file_range``), and once
hashed and on disk all but the last :data:`CACHE_WINDOW` of them leave the page
cache: a download holds a bounded amount of page cache whatever its size.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import anyio

from ._digest import Digest
from ._errors import ArtifactDiskFull

WRITEBACK_EVERY = 8 << 20
"""Bytes written between two requests to start writing a download in progress to disk."""

HASH_BLOCK = 1 << 20
"""Bytes read back and hashed per worker-thread call."""

CACHE_WINDOW = 32 << 20
"""Bytes of a download in progress kept in the page cache once written to disk and hashed."""

_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4
_SYNC_FILE_RANGE_DURABLE = (
    _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER)
_fadvise = getattr(os, "posix_fadvise", None)
_FOLIO_MAX = 2 << 20


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
_pwritev = getattr(os, "pwritev", None)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


class PartFile:
    """A new file at ``path`` of ``size`` bytes, written at offsets, hashed in order.

    Blocking methods (``write_at``, ``finish``, ``discard``) belong in worker
    threads; :meth:`wrote` and :meth:`hash_behind` are for the event loop.
    """

    def __init__(self, path: Path, algorithm: str, size: int, where: str) -> None:
        self.path = path
        self.size = size
        self._algorithm = algorithm
        self._hasher = hashlib.new(algorithm)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._closed = False
        try:
            self._preallocate(where)
        except BaseException:
            self.discard()
            raise
        self.hashed = 0
        self._released = 0
        self._release_lock = threading.Lock()
        self._hash_lock = threading.Lock()
        self._buffer = bytearray(HASH_BLOCK)
        self._unsynced = 0
        # Which byte ranges are written, as {start: end} of runs without a gap.
        self._runs: dict[int, int] = {}
        self.frontier = 0
        self._moved = anyio.Event()

    def _preallocate(self, where: str) -> None:
        if self.size <= 0 or not hasattr(os, "posix_fallocate"):
            return
        try:
            os.posix_fallocate(self._fd, 0, self.size)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise ArtifactDiskFull(
                    f"artifact {where}: not enough free disk space for its {self.size} bytes "
                    f"under {self.path.parent}; free some space (or remove unused components) and "
                    "deploy again") from None
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise

    def write_at(self, offset: int, parts: list[bytes]) -> int:
        """Write ``parts`` one after the other from ``offset`` (blocking); return the bytes.

        One ``pwritev`` for the lot where the platform has it: the parts are the network's
        pieces (often 64-256 KiB), so this saves a system call per piece.
        """
        total = sum(len(part) for part in parts)
        written = 0
        views = [memoryview(part) for part in parts]
        while written < total:
            if _pwritev is not None:
                n = _pwritev(self._fd, views[:_IOV_MAX], offset + written)
            else:
                n = os.pwrite(self._fd, views[0], offset + written)
            written += n
            while n and views:  # drop what went out, keep the rest of a part cut short
                if n >= len(views[0]):
                    n -= len(views.pop(0))
                else:
                    views[0], n = views[0][n:], 0
        # The next bytes to hash, still in memory and in cache: hash them now rather than
        # read them back later. (``hashed`` only grows, so a miss here is caught up by
        # :meth:`hash_behind` once the frontier covers these bytes.)
        if offset == self.hashed:
            with self._hash_lock:
                if offset == self.hashed:
                    for part in parts:
                        self._hasher.update(part)
                    self.hashed += written
        self._unsynced += written  # (a race between writer threads only shifts the next sync)
        if _start_writeback is not None and self._unsynced >= WRITEBACK_EVERY:
            # Start writing to disk as we go without waiting for it (fdatasync here would
            # stall the pipeline), so the final fsync has only the tail left to wait for.
            _start_writeback(self._fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
            self._unsynced = 0
        self._release_behind()
        return written

    def _release_behind(self) -> None:
        """Let go of the page cache behind the hashed bytes, keeping :data:`CACHE_WINDOW`.

        Waits for those pages to be on disk (they were sent there as they were written;
        a disk slower than the network slows the download here, as the final fsync
        would), then drops them. So a download of any size holds a bounded amount of
        page cache and reuses the same pages all along, instead of pushing out what the
        device had cached (a 1 GiB model on a 1 GiB board) or, in a virtual machine
        that hands free memory back to its host, faulting in fresh host memory page by
        page (3 s per GiB on this project's 2-core microVM: a 1 GiB download went from
        ~230 to ~340 MB/s). Files are read back from disk afterwards, once.
        """
        if _start_writeback is None or _fadvise is None:
            return
        if self.hashed - self._released < 2 * CACHE_WINDOW or not self._release_lock.acquire(
                blocking=False):
            return
        try:
            # Whole folios: the kernel keeps one the range only partly covers, and page
            # cache folios (up to 2 MiB, aligned to their size) would be left behind.
            start, end = self._released, (self.hashed - CACHE_WINDOW) & ~(_FOLIO_MAX - 1)
            if end > start:
                _start_writeback(self._fd, start, end - start, _SYNC_FILE_RANGE_DURABLE)
                _fadvise(self._fd, start, end - start, os.POSIX_FADV_DONTNEED)
                self._released = end
        finally:
            self._release_lock.release()

    def wrote(self, offset: int, length: int) -> None:
        """Record (on the event loop) that ``[offset, offset + length)`` is on file."""
        if not length:
            return
        end = offset + length
        # Join with a run ending where this one starts, and with one starting where it ends.
        start = next((s for s, e in self._runs.items() if e == offset), offset)
        self._runs[start] = self._runs.pop(end, end)
        if start == 0 and self._runs[0] > self.frontier:
            self.frontier = self._runs[0]
            self._moved.set()

    def _hash_upto(self, end: int) -> None:
        with self._hash_lock:
            self._read_back(end)
        self._release_behind()

    def _read_back(self, end: int) -> None:
        # One reused buffer: a fresh bytes per block, allocated in whichever worker thread
        # runs this, would grow that thread's malloc arena by megabytes for good.
        view = memoryview(self._buffer)
        while self.hashed < end:
            n = os.preadv(self._fd, [view[:min(HASH_BLOCK, end - self.hashed)]], self.hashed)
            if not n:
                raise OSError(errno.EIO, f"{self.path}: short read at {self.hashed}")
            self._hasher.update(view[:n])
            self.hashed += n

    async def hash_behind(self) -> None:
        """Hash the file in order as its frontier moves, until all ``size`` bytes are hashed."""
        while self.hashed < self.size:
            if self.frontier <= self.hashed:
                await self._moved.wait()
                self._moved = anyio.Event()
                continue
            await anyio.to_thread.run_sync(self._hash_upto, self.frontier)

    def finish(self) -> Digest:
        """Hash what is left, flush to stable storage (the rename that follows must not
        publish a hole) and close (blocking)."""
        self._hash_upto(self.size)
        os.fsync(self._fd)
        self._close()
        return Digest(self._algorithm, self._hasher.digest())

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def discard(self) -> None:
        self._close()
        self.path.unlink(missing_ok=True)
