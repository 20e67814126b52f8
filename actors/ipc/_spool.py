"""The MQTT bridge's spool: outgoing messages in order, QoS 1 ones kept on disk until acked.

In memory the spool is a deque of records with consecutive sequence numbers,
oldest first; the bridge sends from it and acknowledges by sequence number.
QoS 1 records are also appended to ``<dir>/spool.log`` so that they survive a
restart of the runtime. Records are framed ``length, crc32, body``; recovery
stops at the first torn or corrupt record (a crash mid-append). An ``ack``
record stores the highest sequence number below which everything is acked.
A message is a ``P`` record (seq, qos, topic, payload: the only kind before
the retain flag was kept, and still the kind of a message without retain and
MQTT 5 fields, so older logs load unchanged) or an ``M`` record (the same with
a flags byte, bit 0 = retain, and the MQTT 5 fields as JSON). A runtime older
than ``M`` records skips them when it reads the log.

Only the spool's own syncer task touches the file, and it does the writes,
fsyncs and compactions in a worker thread, so the event loop never waits on
the disk. A QoS 1 publish is accepted (:meth:`Spool.wait_durable` returns) only
once its record is in the log, so what was accepted survives a kill -9 of the
runtime; the fsync policy says when it also survives a power loss:

- ``always`` (the default): accepted after the fsync that covers the record.
  Appends are group-committed: the records that arrive while one write and
  fsync run go out together in the next, so many concurrent publishers share
  each fsync.
- ``interval``: the same, but the syncer waits ``fsync_interval`` seconds before
  each commit (larger groups, fewer fsyncs, that much more latency).
- ``never``: accepted once written to the OS (a crash of the runtime loses
  nothing; a power loss may lose what the OS had not written yet).

When the file is mostly acknowledged records, the syncer rewrites the live
ones to a temporary file, fsyncs it and renames it over the log (atomic
compaction).

The spool is bounded by ``max_bytes`` of unacknowledged payload: beyond that
a QoS 1 publish is refused with :class:`SpoolFull` (the publisher learns it;
nothing already accepted is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import orjson

from ._errors import ServiceError, SpoolFull
from ._message import MqttProperties

log = logging.getLogger("actors.ipc.spool")

FsyncPolicy = Literal["always", "interval", "never"]
_FRAME = struct.Struct(">II")  # body length, crc32(body)
_PUB = struct.Struct(">cQBH")  # kind, seq, qos, topic length
_ACK = struct.Struct(">cQ")  # kind, acked-below seq
_MSG = struct.Struct(">cQBBHI")  # kind, seq, qos, flags, topic length, properties length
_RETAIN = 0x01
LOG_NAME = "spool.log"
_COMPACT_MIN = 1 << 20


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: MqttProperties | None = None


def _encode_pub(record: Record) -> bytes:
    topic = record.topic.encode()
    if not record.retain and record.properties is None:
        body = _PUB.pack(b"P", record.seq, record.qos, len(topic)) + topic + record.payload
    else:
        properties = (orjson.dumps(record.properties.to_json())
                      if record.properties is not None else b"")
        body = (_MSG.pack(b"M", record.seq, record.qos, _RETAIN if record.retain else 0,
                          len(topic), len(properties)) + topic + properties + record.payload)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _encoded_size(record: Record) -> int:
    if record.retain or record.properties is not None:
        return len(_encode_pub(record))
    return _FRAME.size + _PUB.size + len(record.topic.encode()) + len(record.payload)


def _decode_msg(body: bytes) -> Record:
    _, seq, qos, flags, topic_len, properties_len = _MSG.unpack_from(body)
    pos = _MSG.size
    topic = body[pos:pos + topic_len].decode()
    pos += topic_len
    properties = (MqttProperties.from_json(orjson.loads(body[pos:pos + properties_len]))
                  if properties_len else None)
    pos += properties_len
    return Record(seq, topic, bytes(body[pos:]), qos, bool(flags & _RETAIN), properties)


def _encode_ack(below: int) -> bytes:
    body = _ACK.pack(b"A", below)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def read_log(path: Path) -> tuple[list[Record], int, int]:
    """(unacked records in order, acked-below watermark, bytes of valid log) from a spool log."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, 0
    records: dict[int, Record] = {}
    below = 0
    pos = 0
    while pos + _FRAME.size <= len(data):
        size, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size:pos + _FRAME.size + size]
        if len(body) < size or zlib.crc32(body) != crc or not body:
            log.warning("%s: torn or corrupt record at byte %d: ignoring the rest", path, pos)
            break
        if body[:1] == b"P" and len(body) >= _PUB.size:
            _, seq, qos, topic_len = _PUB.unpack_from(body)
            topic = body[_PUB.size:_PUB.size + topic_len].decode()
            records[seq] = Record(seq, topic, bytes(body[_PUB.size + topic_len:]), qos)
        elif body[:1] == b"M" and len(body) >= _MSG.size:
            record = _decode_msg(body)
            records[record.seq] = record
        elif body[:1] == b"A" and len(body) >= _ACK.size:
            below = max(below, _ACK.unpack_from(body)[1])
        pos += _FRAME.size + size
    pending = [records[s] for s in sorted(records) if s >= below]
    return pending, below, pos


class Spool:
    """Ordered outgoing messages with a durable QoS 1 part (see the module docstring)."""

    def __init__(self, directory: Path | None, *, max_bytes: int = 16 << 20,
                 fsync: FsyncPolicy = "always", fsync_interval: float = 0.05) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"fsync policy must be always, interval or never, not {fsync!r}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.records: deque[Record] = deque()
        self._acked: set[int] = set()
        self.next_seq = 0
        self.bytes = 0
        self._buffer = bytearray()
        self._buffered_seq = -1
        self.durable_seq = -1
        self._file_bytes = 0
        self._live_bytes = 0
        self._open = False
        self._dirty = asyncio.Event()
        self._new = asyncio.Event()
        # Publishers waiting for their record to be in the log: (seq, tie, future), a heap,
        # so that each commit wakes exactly the publishers it covers.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tie = itertools.count()
        self._pub_buffered = False
        self._empty = asyncio.Event()
        self._empty.set()
        self.acked_count = 0

    # -- opening (in a worker thread) ------------------------------------------

    def load(self) -> None:
        """Read the log left by a previous run and open it for appending (blocking)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOG_NAME
        pending, below, valid = read_log(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, valid)  # drop a torn tail so new records follow valid ones
        finally:
            os.close(fd)
        self._open = True
        self._file_bytes = valid
        self.next_seq = max(below, pending[-1].seq + 1 if pending else 0)
        # Renumber nothing: recovered records keep their numbers; gaps (records
        # that were acked out of order) are filled as acked.
        for record in pending:
            self.records.append(record)
            self.bytes += len(record.payload)
        self._live_bytes = sum(_encoded_size(r) for r in pending)
        self._fill_gaps()
        if self.records:
            self._empty.clear()
        self.durable_seq = self.next_seq - 1
        if pending:
            log.info("spool %s: %d unsent QoS 1 message(s) recovered", path, len(pending))

    def _fill_gaps(self) -> None:
        if not self.records:
            return
        filled: deque[Record] = deque()
        expected = self.records[0].seq
        for record in self.records:
            while expected < record.seq:
                filled.append(Record(expected, "", b"", -1))
                self._acked.add(expected)
                expected += 1
            filled.append(record)
            expected += 1
        self.records = filled

    def close(self) -> None:
        """Write what is still buffered, fsync and close the log (blocking: call it in a
        worker thread)."""
        if self._open:
            data = bytes(self._buffer)
            self._buffer.clear()
            if data:
                self._write(data, self.fsync != "never")
                self.durable_seq = max(self.durable_seq, self._buffered_seq)
            self._open = False

    def closed(self) -> None:
        """After :meth:`close` (in the event loop): wake the publishers still waiting."""
        self._release(self.durable_seq)
        self._release(self.next_seq, ServiceError(
            "the MQTT bridge stopped before the message was stored; publish again"))

    # -- the bridge's side ---------------------------------------------------------

    def append(self, topic: str, payload: bytes, qos: int, *, retain: bool = False,
               properties: MqttProperties | None = None) -> Record:
        """Queue a message; QoS 1 ones also go to the log. Raises :class:`SpoolFull`."""
        if qos > 0 and self.bytes + len(payload) > self.max_bytes:
            raise SpoolFull(f"the MQTT spool holds {self.bytes} bytes of unsent QoS 1 messages "
                            f"(limit {self.max_bytes}); retry when the connection is back")
        record = Record(self.next_seq, topic, payload, qos, retain, properties)
        self.next_seq += 1
        self.records.append(record)
        self._empty.clear()
        self.bytes += len(payload)
        if qos > 0 and self._open:
            encoded = _encode_pub(record)
            self._buffer += encoded
            self._live_bytes += len(encoded)
            self._buffered_seq = record.seq
            self._pub_buffered = True
            self._dirty.set()
        self._new.set()
        return record

    async def wait_durable(self, record: Record) -> None:
        """Wait until ``record`` is in the log: fsynced (policies ``always`` and
        ``interval``) or written to the OS (``never``); see the module docstring.
        Returns at once for QoS 0 and for a spool without a folder."""
        if not self._open or record.qos == 0 or self.durable_seq >= record.seq:
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (record.seq, next(self._tie), future))
        await future

    def first(self) -> int:
        """The sequence number of the oldest unacknowledged record (next_seq if none)."""
        return self.records[0].seq if self.records else self.next_seq

    def get(self, seq: int) -> Record | None:
        """The record ``seq`` if it is still unacknowledged and already queued."""
        records = self.records
        if not records:
            return None
        index = seq - records[0].seq
        if index < 0 or index >= len(records) or seq in self._acked:
            return None
        return records[index]

    async def wait_empty(self) -> None:
        """Wait until every queued record is acknowledged (or dropped, for QoS 0)."""
        while self.records:
            await self._empty.wait()

    async def wait_new(self, seq: int) -> None:
        while seq >= self.next_seq:
            self._new.clear()
            await self._new.wait()

    def ack(self, seq: int) -> None:
        records = self.records
        if not records or seq < records[0].seq:
            return
        self._acked.add(seq)
        self.acked_count += 1
        # Only a QoS 1 record leaving moves what the log must remember: QoS 0 ones are
        # never written, so acknowledging them alone writes nothing.
        logged = False
        while records and records[0].seq in self._acked:
            record = records.popleft()
            self._acked.discard(record.seq)
            self.bytes -= len(record.payload)
            if record.qos > 0:
                self._live_bytes -= _encoded_size(record)
                logged = True
        if not records:
            self._empty.set()
        if logged and self._open:
            self._buffer += _encode_ack(self.first())
            self._dirty.set()

    def drop_qos0(self) -> int:
        """Drop queued QoS 0 messages (they are not kept while offline); returns how many."""
        dropped = 0
        for record in list(self.records):
            if record.qos == 0 and record.seq not in self._acked:
                self._acked.add(record.seq)
                dropped += 1
        # Advance the watermark over the dropped ones.
        while self.records and self.records[0].seq in self._acked:
            record = self.records.popleft()
            self._acked.discard(record.seq)
            self.bytes -= len(record.payload)
        if not self.records:
            self._empty.set()
        return dropped

    # -- the syncer ------------------------------------------------------------------

    async def run(self) -> None:
        """Write, fsync and compact the log until cancelled (then flush once more)."""
        if not self._open:
            await anyio.sleep_forever()
        try:
            while True:
                await self._dirty.wait()
                if self.fsync == "interval":
                    await anyio.sleep(self.fsync_interval)
                await self._sync()
        finally:
            await self._sync()

    async def _sync(self) -> None:
        # Shielded: once the buffer is taken it must reach the file; a cancellation
        # landing on the worker-thread call would otherwise drop it.
        with anyio.CancelScope(shield=True):
            await self._sync_unshielded()

    async def _sync_unshielded(self) -> None:
        self._dirty.clear()
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            upto = self._buffered_seq
            # Only new records need the fsync: a lost ack record means a resend, which
            # at-least-once allows.
            sync = self.fsync != "never" and self._pub_buffered
            self._pub_buffered = False
            try:
                await anyio.to_thread.run_sync(self._write, data, sync)
            except OSError as exc:
                self._release(upto, ServiceError(
                    f"the MQTT spool {self.directory} could not be written "
                    f"({os.strerror(exc.errno) if exc.errno else exc}): the message was not "
                    f"stored; free disk space and publish again"))
                raise
            self._file_bytes += len(data)
            self.durable_seq = max(self.durable_seq, upto)
            self._release(self.durable_seq)
        if self._file_bytes > _COMPACT_MIN and self._file_bytes > 4 * max(self._live_bytes, 1):
            live = b"".join(_encode_pub(r) for r in self.records
                            if r.qos > 0 and r.seq not in self._acked and r.seq <= self.durable_seq)
            live = _encode_ack(self.first()) + live
            if self._buffer:
                return  # new records arrived during the write: compact next time
            await anyio.to_thread.run_sync(self._compact, live)
            self._file_bytes = len(live)

    def _release(self, upto: int, error: BaseException | None = None) -> None:
        """Wake the publishers whose records up to ``upto`` are now in the log (or failed)."""
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _write(self, data: bytes, sync: bool) -> None:
        # Opened per batch rather than held: a descriptor held for hours can be closed
        # from under us by a library that closes a stale number it once owned.
        assert self.directory is not None
        fd = os.open(self.directory / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _compact(self, live: bytes) -> None:
        assert self.directory is not None
        path = self.directory / LOG_NAME
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, live)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
