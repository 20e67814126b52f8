"""The IPC client SDK: what a component uses to publish, subscribe and read its configuration.

A component process started by the runtime calls :func:`connect` (asyncio) or
:func:`connect_sync` (plain scripts) with no arguments: the socket path and
the component's token come from the environment
(``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``, ``SVCUID``), as
Greengrass hands them over. Both speak Greengrass's eventstream RPC, the
protocol of the AWS IoT Device SDK (which works against the runtime too). A
component running in-process (an actor) gets the same API from
:class:`LocalIpcClient`, which calls the service directly.

    async with await connect() as ipc:
        await ipc.publish_to_topic("ml/results", {"label": "cat"})
        async with await ipc.subscribe_to_topic("ml/#") as stream:
            async for message in stream:
                print(message.topic, message.payload)

Every operation of the service model (:mod:`actors.ipc._model`) can be
called by name with ``call(operation, request)`` (unary) and
``stream(operation, request)`` (streaming); the common ones have methods,
each written once for both clients (:class:`_Operations`).

This module imports nothing of the server (the broker, the service).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import queue
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import orjson

from . import _rpc
from ._errors import IpcError, ServiceError, StreamClosed, UnauthorizedError, error_from_wire
from ._eventstream import Decoder
from ._message import (
    IotCoreMessage,
    Message,
    MqttProperties,
    b64encode,
    event_message,
    iot_core_message,
    publish_message,
)
from ._model import Operation, operation

if TYPE_CHECKING:
    from ._local import LocalIpcClient

ENV_SOCKET = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
ENV_TOKEN = "SVCUID"

__all__ = [
    "IotCoreMessage",
    "IpcClient",
    "LocalIpcClient",
    "Message",
    "MqttProperties",
    "Stream",
    "SyncIpcClient",
    "SyncStream",
    "connect",
    "connect_sync",
]


def __getattr__(name: str) -> Any:
    if name == "LocalIpcClient":  # in-process: it needs the service, loaded only then
        from ._local import LocalIpcClient
        return LocalIpcClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _payload(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def _receive_mode(mode: object) -> str:
    text = str(getattr(mode, "value", mode))
    if text not in ("RECEIVE_ALL_MESSAGES", "RECEIVE_MESSAGES_FROM_OTHERS"):
        raise ValueError(f"receive mode must be RECEIVE_ALL_MESSAGES or "
                         f"RECEIVE_MESSAGES_FROM_OTHERS, got {mode!r}")
    return text


def _value(response: dict[str, Any]) -> Any:
    return response["value"]


def _result(response: dict[str, Any]) -> Any:
    return response["result"]


def _config_event(event: dict[str, Any]) -> Any:
    return event["configurationUpdateEvent"]


def _same(event: dict[str, Any]) -> Any:
    return event


class _Operations:
    """The operations, each written once: ``_call`` / ``_open`` are the client's (awaitable
    in the async client, blocking in the sync one)."""

    def _call(self, op: str, request: dict[str, Any],
              extract: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        raise NotImplementedError

    def _open(self, op: str, request: dict[str, Any], convert: Callable[[Any], Any],
              on_message: Callable[[Any], None] | None = None) -> Any:
        raise NotImplementedError

    def call(self, operation: str, request: dict[str, Any]) -> Any:
        """Any unary operation by its Greengrass name (the CLI's operations too)."""
        return self._call(operation, request)

    def stream(self, operation: str, request: dict[str, Any], *,
               on_message: Callable[[Any], None] | None = None) -> Any:
        """Any streaming operation by name: a stream of its events (JSON objects)."""
        return self._open(operation, request, _same, on_message)

    def publish_to_topic(self, topic: str, message: Any) -> Any:
        """PublishToTopic: ``bytes`` go as a binary message, anything else as JSON."""
        return self._call("PublishToTopic", {"topic": topic,
                                             "publishMessage": publish_message(message)})

    def subscribe_to_topic(self, topic: str, receive_mode: object = None, *,
                           on_message: Callable[[Message], None] | None = None) -> Any:
        request: dict[str, Any] = {"topic": topic}
        if receive_mode is not None:
            request["receiveMode"] = _receive_mode(receive_mode)
        return self._open("SubscribeToTopic", request, event_message, on_message)

    def publish_to_iot_core(self, topic: str, payload: bytes | str, qos: int = 0, *,
                            retain: bool = False,
                            properties: MqttProperties | None = None) -> Any:
        """PublishToIoTCore; ``retain`` and the MQTT 5 ``properties`` go with the message."""
        request: dict[str, Any] = {"topicName": topic, "qos": str(qos),
                                   "payload": b64encode(_payload(payload))}
        if retain:
            request["retain"] = True
        if properties is not None:
            request.update(properties.to_json())
        return self._call("PublishToIoTCore", request)

    def subscribe_to_iot_core(self, topic: str, qos: int = 0, *,
                              on_message: Callable[[Message], None] | None = None) -> Any:
        return self._open("SubscribeToIoTCore", {"topicName": topic, "qos": str(qos)},
                          iot_core_message, on_message)

    def get_configuration(self, key_path: Sequence[str] = (),
                          component_name: str | None = None) -> Any:
        """The value at ``key_path`` (Greengrass answers a leaf as ``{leaf_key: value}``)."""
        request: dict[str, Any] = {"keyPath": list(key_path)}
        if component_name:
            request["componentName"] = component_name
        return self._call("GetConfiguration", request, _value)

    def update_configuration(self, key_path: Sequence[str], value_to_merge: Mapping[str, Any],
                             timestamp: float | None = None) -> Any:
        """Merge into the own configuration; ``timestamp`` in seconds since the epoch."""
        request: dict[str, Any] = {"keyPath": list(key_path), "valueToMerge": dict(value_to_merge)}
        if timestamp is not None:
            request["timestamp"] = timestamp
        return self._call("UpdateConfiguration", request)

    def subscribe_to_configuration_update(
            self, key_path: Sequence[str] = (), component_name: str | None = None, *,
            on_message: Callable[[Any], None] | None = None) -> Any:
        request: dict[str, Any] = {"keyPath": list(key_path)}
        if component_name:
            request["componentName"] = component_name
        return self._open("SubscribeToConfigurationUpdate", request, _config_event, on_message)

    def update_state(self, state: str) -> Any:
        return self._call("UpdateState", {"state": state})

    def defer_component_update(self, deployment_id: str, message: str = "",
                               recheck_after_ms: int = 0) -> Any:
        return self._call("DeferComponentUpdate", {"deploymentId": deployment_id,
                                                   "message": message,
                                                   "recheckAfterMs": recheck_after_ms})

    def put_component_metric(self, metrics: Sequence[Mapping[str, Any]]) -> Any:
        """PutComponentMetric: ``[{"name": ..., "unit": "Count", "value": 1}]``."""
        return self._call("PutComponentMetric", {"metrics": [dict(m) for m in metrics]})

    def infer(self, component: str, image: bytes, name: str = "") -> Any:
        """``component``'s result message for one encoded image (the ``Infer``
        operation; needs an ``edge-actors.ipc.inference`` policy naming it)."""
        return self._call("Infer", {"componentName": component, "image": b64encode(image),
                                    "imageName": name}, _result)


def _error_of(headers: dict[str, Any], payload: bytes) -> IpcError:
    try:
        text = str(orjson.loads(payload).get("message", "")) if payload else ""
    except (orjson.JSONDecodeError, AttributeError):
        text = payload.decode(errors="replace")
    return error_from_wire(str(headers.get("service-model-type", "")), text)


def _json(payload: bytes) -> Any:
    return orjson.loads(payload) if payload else {}


def _connect_message(token: str, component_name: str | None) -> bytes:
    if component_name:
        from ._eventstream import encode_headers
        return _rpc.message(_rpc.CONNECT, 0, orjson.dumps({"authToken": token,
                                                            "componentName": component_name}),
                            extra=encode_headers({":version": _rpc.VERSION}))
    return _rpc.connect(token)


_REQUESTS: dict[str, _rpc.PyTemplate] = {}


def _request(op: str | Operation, request: dict[str, Any]) -> tuple[_rpc.PyTemplate, bytes]:
    """The template and payload of a request (fields set to None left out): encoded
    before a stream id is taken, so that a request that cannot be encoded (orjson's
    TypeError) leaves no gap in the stream ids, which the runtime would refuse."""
    template = _REQUESTS.get(op) if type(op) is str else None
    if template is None:
        model = operation(op) if isinstance(op, str) else op
        template = _rpc.template(_rpc.APPLICATION_MESSAGE, 0, model.request_shape,
                                 model.full_name)
        if isinstance(op, str):
            if len(_REQUESTS) >= 256:
                _REQUESTS.clear()
            _REQUESTS[op] = template
    if None in request.values():
        request = {k: v for k, v in request.items() if v is not None}
    return template, orjson.dumps(request)


_REFUSED = ("the runtime refused the authToken (SVCUID): it is not valid for any component, "
            "or not for the component named")


def _refused(payload: bytes) -> str:
    try:
        reason = _json(payload).get("message")
    except (orjson.JSONDecodeError, AttributeError):
        reason = None
    return f"{_REFUSED}: {reason}" if reason else _REFUSED


# -- the asyncio client -----------------------------------------------------------


class Stream:
    """The events of one streaming operation (async-iterable, or :meth:`receive`);
    :meth:`close` cancels it at the runtime. At most ``maxsize`` events wait (the
    oldest are dropped and counted in ``dropped``)."""

    def __init__(self, close: Callable[[], None], maxsize: int,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._close_remote = close
        self._loop = loop
        self._items: collections.deque[Any] = collections.deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.closed = False
        self.error: BaseException | None = None

    def _deliver(self, item: Any) -> None:
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._wake()

    def _end(self, error: BaseException | None = None) -> None:
        self.closed = True
        self.error = self.error or error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self) -> None:
        """Wait until an event is queued or the stream is closed."""
        while not self._items and not self.closed:
            self._waiter = (self._loop or asyncio.get_running_loop()).create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def receive(self) -> Any:
        """The next event; raises :class:`StreamClosed` once closed and drained."""
        while not self._items:
            if self.closed:
                raise StreamClosed(f"the stream is closed{f': {self.error}' if self.error else ''}")
            self._waiter = (self._loop or asyncio.get_running_loop()).create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def receive_nowait(self) -> Any:
        if not self._items:
            if self.closed:
                raise StreamClosed("the stream is closed")
            raise IndexError("no event is waiting")
        return self._items.popleft()

    def drain(self) -> list[Any]:
        items = list(self._items)
        self._items.clear()
        return items

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except StreamClosed:
                return

    def close(self) -> None:
        if not self.closed:
            self._close_remote()
            self._end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: IpcClient) -> None:
        self.client = client
        self.decoder = Decoder()
        self.can_write = asyncio.Event()
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        dispatch = self.client._dispatch
        for headers, payload in self.decoder.feed(data):
            dispatch(headers, payload)
        if self.decoder.error is not None:
            self.client._lost(StreamClosed(f"bad message from the runtime: {self.decoder.error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        self.client._lost(exc or StreamClosed("the IPC server closed the connection"))

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


class IpcClient(_Operations):
    """The async client of a component process, over the runtime's Unix socket.

    Requests from several tasks are multiplexed on the one connection (one
    eventstream RPC stream each); each call returns when the runtime answered
    (raising the runtime's error).
    """

    def __init__(self, path: str, token: str, *, component_name: str | None = None,
                 queue_size: int = 1000) -> None:
        self.path = path
        self._token = token
        self.component = component_name or ""
        self._claimed = component_name
        self.queue_size = queue_size
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[asyncio.Future[Any], Callable[[Any], Any] | None]] = {}
        self._streams: dict[int, tuple[Stream, Callable[[Any], Any]]] = {}
        self._transport: asyncio.Transport | None = None
        self._protocol: _ClientProtocol | None = None
        self._error: BaseException | None = None
        self._ack: asyncio.Future[None] | None = None
        # the connection's loop: asyncio.get_running_loop() costs a getpid() system call
        # per call before Python 3.12 (its fork check), one per request
        self._loop: asyncio.AbstractEventLoop | None = None

    async def connect(self, timeout: float = 10.0) -> Self:
        loop = self._loop = asyncio.get_running_loop()
        self._ack = loop.create_future()
        transport, protocol = await loop.create_unix_connection(
            lambda: _ClientProtocol(self), self.path)
        self._transport, self._protocol = transport, protocol
        transport.write(_connect_message(self._token, self._claimed))
        try:
            async with asyncio.timeout(timeout):
                await self._ack
        except BaseException:
            transport.close()
            raise
        return self

    # -- plumbing --------------------------------------------------------------

    def _dispatch(self, headers: dict[str, Any], payload: bytes) -> None:
        message_type = headers.get(":message-type")
        flags = headers.get(":message-flags", 0)
        stream_id = headers.get(":stream-id")
        if stream_id == 0:
            if message_type == _rpc.CONNECT_ACK:
                ack = self._ack
                if ack is not None and not ack.done():
                    if flags & _rpc.CONNECTION_ACCEPTED:
                        self.component = str(_json(payload).get("componentName")
                                             or self.component)
                        ack.set_result(None)
                    else:
                        ack.set_exception(UnauthorizedError(_refused(payload)))
            elif message_type == _rpc.PING:
                self._send(_rpc.message(_rpc.PING_RESPONSE, 0, payload))
            elif message_type in (_rpc.PROTOCOL_ERROR, _rpc.INTERNAL_ERROR):
                kind = _rpc.MESSAGE_TYPES[message_type]
                self._lost(StreamClosed(f"the runtime closed the connection with {kind}: "
                                        f"{_error_of(headers, payload)}"))
            return
        call = self._calls.pop(stream_id, None)  # type: ignore[arg-type]
        if call is not None:
            future, extract = call
            if future.done():
                return
            if message_type == _rpc.APPLICATION_ERROR:
                self._streams.pop(stream_id, None)  # type: ignore[arg-type]
                future.set_exception(_error_of(headers, payload))
            else:
                body = orjson.loads(payload) if payload else {}
                future.set_result(extract(body) if extract is not None else body)
            return
        entry = self._streams.get(stream_id)  # type: ignore[arg-type]
        if entry is None:
            return
        stream, convert = entry
        if message_type == _rpc.APPLICATION_ERROR:
            del self._streams[stream_id]  # type: ignore[arg-type]
            stream._end(_error_of(headers, payload))
            return
        if headers.get("service-model-type") is not None:
            stream._deliver(convert(_json(payload)))
        if flags & _rpc.TERMINATE_STREAM:
            self._streams.pop(stream_id, None)  # type: ignore[arg-type]
            stream._end()

    def _lost(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        ack = self._ack
        if ack is not None and not ack.done():
            ack.set_exception(exc if isinstance(exc, IpcError) else StreamClosed(str(exc)))
        for future, _ in self._calls.values():
            if not future.done():
                future.set_exception(StreamClosed(f"the IPC connection is closed: {exc}"))
        self._calls.clear()
        for stream, _ in self._streams.values():
            stream._end(exc)
        self._streams.clear()
        if self._transport is not None:
            self._transport.close()

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def _call(self, op: str, request: dict[str, Any],
                    extract: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        if self._error is not None:
            raise StreamClosed(f"the IPC connection is closed: {self._error}")
        transport, protocol, loop = self._transport, self._protocol, self._loop
        assert transport is not None and protocol is not None and loop is not None, \
            "call connect() first"
        if not protocol.can_write.is_set():
            await protocol.can_write.wait()
        template = _REQUESTS.get(op)
        if template is None or None in request.values():
            template, payload = _request(op, request)
        else:
            payload = orjson.dumps(request)  # _request, inline: the common case
        stream_id = next(self._ids)
        future: asyncio.Future[Any] = loop.create_future()
        self._calls[stream_id] = (future, extract)
        transport.write(template.message(stream_id, payload))
        return await future

    async def _open(self, op: str, request: dict[str, Any], convert: Callable[[Any], Any],
                    on_message: Callable[[Any], None] | None = None) -> Stream:
        model = operation(op)
        if not model.streaming:
            raise ServiceError(f"{model.name} is not a streaming operation: use call()")
        template, payload = _request(model, request)
        stream_id = next(self._ids)

        def close_remote() -> None:
            if self._streams.pop(stream_id, None) is not None:
                self._send(_rpc.message(_rpc.APPLICATION_MESSAGE, stream_id, b"",
                                        _rpc.TERMINATE_STREAM))
        stream = Stream(close_remote, self.queue_size, self._loop)
        if on_message is not None:
            stream._deliver = on_message  # type: ignore[method-assign,assignment]
        self._streams[stream_id] = (stream, convert)
        try:
            if self._error is not None:
                raise StreamClosed(f"the IPC connection is closed: {self._error}")
            assert self._transport is not None and self._loop is not None, \
                "call connect() first"
            future: asyncio.Future[Any] = self._loop.create_future()
            self._calls[stream_id] = (future, None)
            self._transport.write(template.message(stream_id, payload))
            await future
        except BaseException:
            self._streams.pop(stream_id, None)
            raise
        return stream

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._lost(StreamClosed("the client closed the connection"))
        await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def connect(*, environ: Mapping[str, str] | None = None,
                  component_name: str | None = None) -> IpcClient:
    """Connect to the runtime that started this process (reads the environment)."""
    env = os.environ if environ is None else environ
    path, token = _from_env(env)
    return await IpcClient(path, token, component_name=component_name).connect()


def _from_env(env: Mapping[str, str]) -> tuple[str, str]:
    path, token = env.get(ENV_SOCKET), env.get(ENV_TOKEN)
    if not path or not token:
        raise StreamClosed(f"{ENV_SOCKET} and {ENV_TOKEN} are not set: this process was not "
                           "started by the runtime as a component")
    return path, token


# -- the blocking client --------------------------------------------------------


class SyncStream:
    """A blocking stream of events for :class:`SyncIpcClient` (iterate, or ``receive``)."""

    _END = object()

    def __init__(self, client: SyncIpcClient, stream_id: int, maxsize: int) -> None:
        self._client = client
        self._id = stream_id
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def _put(self, item: Any) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:  # drop the oldest, like the runtime's own queues
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def receive(self, timeout: float | None = None) -> Any:
        """The next event; raises StreamClosed at the end, TimeoutError after ``timeout``."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout} s") from None
        if item is self._END:
            self._queue.put_nowait(item)
            raise StreamClosed("the stream is closed")
        return item

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        try:
            return self.receive()
        except StreamClosed:
            raise StopIteration from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._client._close_stream(self._id)
            self._put(self._END)


class SyncIpcClient(_Operations):
    """A blocking client for plain scripts: a socket plus one background reader thread.

    ``on_message`` callbacks given to the subscribe methods run on that thread.
    """

    def __init__(self, path: str, token: str, *, component_name: str | None = None,
                 timeout: float = 10.0, queue_size: int = 1000) -> None:
        self.timeout = timeout
        self.queue_size = queue_size
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._decoder = Decoder()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._streams: dict[int, tuple[SyncStream, Callable[[Any], Any],
                                       Callable[[Any], None] | None]] = {}
        self._error: BaseException | None = None
        self._ack = threading.Event()
        self._accepted = False
        self._refusal = _REFUSED
        self.component: str = component_name or ""
        self._reader = threading.Thread(target=self._read, name="ipc-reader", daemon=True)
        self._reader.start()
        self._sock.sendall(_connect_message(token, component_name))
        if not self._ack.wait(timeout):
            self.close()
            raise TimeoutError(f"no CONNECT_ACK from the runtime within {timeout} s")
        if not self._accepted:
            self.close()
            if self._error is not None and not isinstance(self._error, UnauthorizedError):
                raise StreamClosed(f"the IPC connection is closed: {self._error}")
            raise UnauthorizedError(self._refusal)

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(1 << 16)
                if not data:
                    raise StreamClosed("the IPC server closed the connection")
                for headers, payload in self._decoder.feed(data):
                    self._dispatch(headers, payload)
                if self._decoder.error is not None:
                    raise StreamClosed(f"bad message from the runtime: {self._decoder.error}")
        except BaseException as exc:
            with self._lock:
                self._error = self._error or exc
                calls = list(self._calls.values())
                self._calls.clear()
                streams = list(self._streams.values())
                self._streams.clear()
            self._ack.set()
            for event, box in calls:
                box.append(StreamClosed(f"the IPC connection is closed: {exc}"))
                event.set()
            for stream, _, _ in streams:
                stream.closed = True
                stream._put(SyncStream._END)

    def _dispatch(self, headers: dict[str, Any], payload: bytes) -> None:
        message_type = headers.get(":message-type")
        flags = headers.get(":message-flags", 0)
        stream_id = headers.get(":stream-id")
        if stream_id == 0:
            if message_type == _rpc.CONNECT_ACK:
                self._accepted = bool(flags & _rpc.CONNECTION_ACCEPTED)
                self._refusal = _refused(payload)
                if self._accepted:
                    self.component = str(_json(payload).get("componentName") or self.component)
                self._ack.set()
            elif message_type == _rpc.PING:
                with self._lock:
                    self._sock.sendall(_rpc.message(_rpc.PING_RESPONSE, 0, payload))
            elif message_type in (_rpc.PROTOCOL_ERROR, _rpc.INTERNAL_ERROR):
                raise StreamClosed(f"the runtime closed the connection with "
                                   f"{_rpc.MESSAGE_TYPES[message_type]}: "
                                   f"{_error_of(headers, payload)}")
            return
        with self._lock:
            call = self._calls.pop(stream_id, None)  # type: ignore[arg-type]
        if call is not None:
            if message_type == _rpc.APPLICATION_ERROR:
                with self._lock:
                    self._streams.pop(stream_id, None)  # type: ignore[arg-type]
                call[1].append(_error_of(headers, payload))
            else:
                call[1].append(_json(payload))
            call[0].set()
            return
        entry = self._streams.get(stream_id)  # type: ignore[arg-type]
        if entry is None:
            return
        stream, convert, callback = entry
        if message_type != _rpc.APPLICATION_ERROR and headers.get("service-model-type"):
            item = convert(_json(payload))
            if callback is not None:
                callback(item)
            else:
                stream._put(item)
        if message_type == _rpc.APPLICATION_ERROR or flags & _rpc.TERMINATE_STREAM:
            with self._lock:
                self._streams.pop(stream_id, None)  # type: ignore[arg-type]
            stream.closed = True
            stream._put(SyncStream._END)

    def _send_request(self, op: str, request: dict[str, Any],
                      stream: tuple[Callable[[Any], Any], Callable[[Any], None] | None]
                      | None = None) -> tuple[dict[str, Any], SyncStream | None]:
        """Send a request and wait for its answer; ``stream`` (convert, on_message) opens
        a stream. The stream id is taken and the request sent under one hold of the
        lock: requests of several threads reach the runtime in the order of their ids."""
        template, payload = _request(op, request)
        event, box = threading.Event(), []  # type: ignore[var-annotated]
        opened: SyncStream | None = None
        with self._lock:
            if self._error is not None:
                raise StreamClosed(f"the IPC connection is closed: {self._error}")
            stream_id = next(self._ids)
            if stream is not None:
                opened = SyncStream(self, stream_id, self.queue_size)
                self._streams[stream_id] = (opened, *stream)
            self._calls[stream_id] = (event, box)
            try:
                self._sock.sendall(template.message(stream_id, payload))
            except BaseException:
                self._calls.pop(stream_id, None)
                self._streams.pop(stream_id, None)
                raise
        try:
            if not event.wait(self.timeout):
                raise TimeoutError(f"no answer to {op} within {self.timeout} s")
            if isinstance(box[0], BaseException):
                raise box[0]
        except BaseException:
            with self._lock:
                self._calls.pop(stream_id, None)
                self._streams.pop(stream_id, None)
            raise
        result: dict[str, Any] = box[0]
        return result, opened

    def _call(self, op: str, request: dict[str, Any],
              extract: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        body, _ = self._send_request(op, request)
        return extract(body) if extract is not None else body

    def _open(self, op: str, request: dict[str, Any], convert: Callable[[Any], Any],
              on_message: Callable[[Any], None] | None = None) -> SyncStream:
        if not operation(op).streaming:
            raise ServiceError(f"{op} is not a streaming operation: use call()")
        _, stream = self._send_request(op, request, (convert, on_message))
        assert stream is not None
        return stream

    def _close_stream(self, stream_id: int) -> None:
        with self._lock:
            if self._streams.pop(stream_id, None) is not None and self._error is None:
                self._sock.sendall(_rpc.message(_rpc.APPLICATION_MESSAGE, stream_id, b"",
                                                _rpc.TERMINATE_STREAM))

    def close(self) -> None:
        with self._lock:
            if self._error is None:
                self._error = StreamClosed("the client closed the connection")
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(self.timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def connect_sync(*, environ: Mapping[str, str] | None = None,
                 component_name: str | None = None, timeout: float = 10.0) -> SyncIpcClient:
    """Connect a plain (blocking) script to the runtime that started it (reads the environment)."""
    env = os.environ if environ is None else environ
    path, token = _from_env(env)
    return SyncIpcClient(path, token, component_name=component_name, timeout=timeout)
