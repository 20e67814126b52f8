"""A lifecycle step's process, started with ``subprocess.Popen`` (close_fds, as
plain asyncio does) and watched through a pidfd, not through the event loop's
subprocess transport: uvloop's transport leaves inheritable copies of the
child's stdout/stderr pipe ends open in the child (it marks them inheritable and
libuv only dup2()s them), so a daemon started in the background kept the pipe
open and the step never saw end of file."""

from __future__ import annotations

import os
import subprocess

import anyio
import anyio.abc


class _PipeStream(anyio.abc.ByteReceiveStream):
    """The read end of a child's stdout or stderr pipe; closed at end of file."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd < 0:
                raise anyio.EndOfStream
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                self.close()
                raise anyio.EndOfStream
            return data

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    async def aclose(self) -> None:
        self.close()


class ChildProcess:
    """A lifecycle step's process: ``pid``, ``returncode``, ``wait()`` and its output
    streams, as anyio's Process has them."""

    def __init__(self, popen: subprocess.Popen[bytes], stdout: int, stderr: int) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self.stdout: _PipeStream | None = _PipeStream(stdout)
        self.stderr: _PipeStream | None = _PipeStream(stderr)
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (OSError, AttributeError):  # kernels before 5.3: poll instead
            self._pidfd = None
        self._lock = anyio.Lock()

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 255 << 8
            if pid:
                self._exited(os.waitstatus_to_exitcode(status))
        return self.returncode

    def _exited(self, code: int) -> None:
        self.returncode = code
        # Popen must not wait for this pid again: it may already be another process's.
        self._popen.returncode = code
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    async def wait(self) -> int:
        async with self._lock:
            while self.poll() is None:
                if self._pidfd is not None:
                    await anyio.wait_readable(self._pidfd)
                else:
                    await anyio.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def close(self) -> None:
        """Close the output pipes (a step that ended before its output was read)."""
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
