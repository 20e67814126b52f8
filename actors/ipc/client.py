"""The IPC client SDK: what a component uses to publish, subscribe and read its configuration.

A component process started by the runtime calls :func:`connect` (asyncio) or
:func:`connect_sync` (plain scripts) with no arguments: the socket path and
the component's token come from the environment
(``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``, ``SVCUID``), as
Greengrass hands them over. A component running in-process (an actor) gets
the same API from :class:`LocalIpcClient`, which calls the service directly.

    async with await connect() as ipc:
        await ipc.publish_to_topic("ml/results", {"label": "cat"})
        async with await ipc.subscribe_to_topic("ml/#") as stream:
            async for message in stream:
                print(message.topic, message.payload)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from . import _wire
from ._broker import Message, Overflow, ReceiveMode, Subscription
from ._errors import ProtocolError, StreamClosed, error_from_wire
from ._server import ENV_SOCKET, ENV_TOKEN
from ._service import IpcService, StreamResult

__all__ = [
    "AsyncIpcClient",
    "IpcClient",
    "LocalIpcClient",
    "Message",
    "ReceiveMode",
    "Subscription",
    "SyncIpcClient",
    "SyncStream",
    "connect",
    "connect_sync",
]


class AsyncIpcClient(Protocol):
    """The operations both async clients offer (socket and in-process)."""

    component: str

    async def publish_to_topic(self, topic: str, message: Any) -> None: ...
    async def subscribe_to_topic(self, topic: str, receive_mode: ReceiveMode | str | None = None
                                 ) -> Subscription: ...
    async def publish_to_iot_core(self, topic: str, payload: bytes | str, qos: int = 0
                                  ) -> None: ...
    async def subscribe_to_iot_core(self, topic: str, qos: int = 0) -> Subscription: ...
    async def get_configuration(self, key_path: Sequence[str] = (),
                                component_name: str | None = None) -> Any: ...
    async def update_configuration(self, key_path: Sequence[str],
                                   value_to_merge: Mapping[str, Any],
                                   timestamp: float | None = None) -> None: ...
    async def subscribe_to_configuration_update(
        self, key_path: Sequence[str] = (), component_name: str | None = None
    ) -> Subscription: ...
    async def update_state(self, state: str) -> None: ...
    async def defer_component_update(self, deployment_id: str, message: str = "",
                                     recheck_after_ms: int = 0) -> None: ...
    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]: ...
    async def infer(self, component: str, image: bytes, name: str = "") -> dict[str, Any]: ...
    async def close(self) -> None: ...


def _payload(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def _infer_request(component: str, image: bytes, name: str) -> dict[str, Any]:
    return {"componentName": component, "image": _wire.b64encode(image), "imageName": name}


class _Closing:
    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def infer(self, component: str, image: bytes, name: str = "") -> dict[str, Any]:
        """``component``'s result message for one encoded image (the ``Infer``
        operation; needs an ``edge-actors.ipc.inference`` policy naming it)."""
        reply = await self.call("Infer", _infer_request(component, image, name))
        result: dict[str, Any] = reply["result"]
        return result

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class LocalIpcClient(_Closing):
    """The client API for an in-process component: direct calls, no socket, same checks."""

    def __init__(self, service: IpcService, component: str) -> None:
        self.service = service
        self.component = component
        self._streams: list[Subscription] = []

    async def publish_to_topic(self, topic: str, message: Any) -> None:
        await self.service.publish_to_topic(self.component, topic, message)

    def publish_to_topic_nowait(self, topic: str, message: Any) -> None:
        """Publish without waiting; raises SubscriberFull if a backpressure queue is full."""
        self.service.publish_to_topic_nowait(self.component, topic, message)

    async def subscribe_to_topic(self, topic: str, receive_mode: ReceiveMode | str | None = None,
                                 *, queue_size: int | None = None,
                                 overflow: Overflow | str = Overflow.DROP_OLDEST
                                 ) -> Subscription:
        return self._keep(self.service.subscribe_to_topic(
            self.component, topic, receive_mode, queue_size=queue_size, overflow=overflow))

    async def publish_to_iot_core(self, topic: str, payload: bytes | str, qos: int = 0) -> None:
        await self.service.publish_to_iot_core(self.component, topic, _payload(payload), qos)

    async def subscribe_to_iot_core(self, topic: str, qos: int = 0) -> Subscription:
        return self._keep(self.service.subscribe_to_iot_core(self.component, topic, qos))

    async def get_configuration(self, key_path: Sequence[str] = (),
                                component_name: str | None = None) -> Any:
        response = await self.service.get_configuration(self.component, key_path, component_name)
        return response["value"]

    async def update_configuration(self, key_path: Sequence[str],
                                   value_to_merge: Mapping[str, Any],
                                   timestamp: float | None = None) -> None:
        await self.service.update_configuration(self.component, key_path, value_to_merge,
                                                timestamp)

    async def subscribe_to_configuration_update(
        self, key_path: Sequence[str] = (), component_name: str | None = None
    ) -> Subscription:
        return self._keep(self.service.subscribe_to_configuration_update(
            self.component, key_path, component_name))

    async def update_state(self, state: str) -> None:
        self.service.update_state(self.component, state)

    async def defer_component_update(self, deployment_id: str, message: str = "",
                                     recheck_after_ms: int = 0) -> None:
        self.service.defer_component_update(self.component, deployment_id, message,
                                            recheck_after_ms)

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        from ._service import CallContext

        result = await self.service.call(CallContext(self.component), operation, request)
        if isinstance(result, StreamResult):
            result.stream.close()
            raise ProtocolError(f"{operation} is a streaming operation: use call_stream")
        return result

    def _keep(self, sub: Subscription) -> Subscription:
        self._streams = [s for s in self._streams if not s.closed]
        self._streams.append(sub)
        return sub

    async def close(self) -> None:
        for sub in self._streams:
            sub.close()
        self._streams.clear()


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: IpcClient) -> None:
        self.client = client
        self.decoder = _wire.FrameDecoder(client.max_frame)
        self.can_write = asyncio.Event()
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.client._dispatch(frame)
        if self.decoder.error is not None:
            self.client._lost(self.decoder.error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        self.client._lost(exc or StreamClosed("the IPC server closed the connection"))

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


class IpcClient(_Closing):
    """The async client of a component process, over the runtime's Unix socket.

    Requests from several tasks are multiplexed on the one connection; each
    call returns when the runtime answered (raising the runtime's error).
    """

    def __init__(self, path: str, token: str, *, component_name: str | None = None,
                 max_frame: int = _wire.DEFAULT_MAX_FRAME, queue_size: int = 1000) -> None:
        self.path = path
        self._token = token
        self.component = component_name or ""
        self.max_frame = max_frame
        self.queue_size = queue_size
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[int, tuple[Subscription, Callable[[Any], Any]]] = {}
        self._transport: asyncio.Transport | None = None
        self._protocol: _ClientProtocol | None = None
        self._error: BaseException | None = None

    async def connect(self) -> Self:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_unix_connection(
            lambda: _ClientProtocol(self), self.path)
        self._transport, self._protocol = transport, protocol
        response = await self._request("Connect", {"authToken": self._token,
                                                   "componentName": self.component or None},
                                       ident=0)
        self.component = response["componentName"]
        return self

    # -- plumbing --------------------------------------------------------------

    def _dispatch(self, frame: dict[str, Any]) -> None:
        ident = frame.get("id")
        if "event" in frame:
            entry = self._streams.get(ident)  # type: ignore[arg-type]
            if entry is not None:
                entry[0].deliver(entry[1](frame["event"]))
            return
        if "end" in frame:
            entry = self._streams.pop(ident, None)  # type: ignore[arg-type]
            if entry is not None:
                entry[0]._on_close = None
                entry[0].close()
            return
        if ident is None and "error" in frame:
            error = frame["error"]
            self._lost(error_from_wire(error.get("type", ""), error.get("message", "")))
            return
        future = self._calls.pop(ident, None)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if "error" in frame:
            error = frame["error"]
            future.set_exception(error_from_wire(error.get("type", ""), error.get("message", "")))
        else:
            future.set_result(frame.get("response") or {})

    def _lost(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        for future in self._calls.values():
            if not future.done():
                future.set_exception(self._error)
        self._calls.clear()
        for sub, _ in self._streams.values():
            sub._on_close = None
            sub.close()
        self._streams.clear()
        if self._transport is not None:
            self._transport.close()

    async def _request(self, op: str, request: dict[str, Any], ident: int | None = None
                       ) -> dict[str, Any]:
        if self._error is not None:
            raise StreamClosed(f"the IPC connection is closed: {self._error}")
        transport, protocol = self._transport, self._protocol
        assert transport is not None and protocol is not None, "call connect() first"
        if not protocol.can_write.is_set():
            await protocol.can_write.wait()
        ident = next(self._ids) if ident is None else ident
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[ident] = future
        transport.write(_wire.encode_frame({"id": ident, "op": op, "request": request}))
        return await future

    async def _stream(self, op: str, request: dict[str, Any], topic: str,
                      convert: Callable[[Any], Any]) -> Subscription:
        ident = next(self._ids)
        sub = Subscription(None, self.component, topic, ReceiveMode.RECEIVE_ALL_MESSAGES,
                           self.queue_size, Overflow.DROP_OLDEST)
        self._streams[ident] = (sub, convert)
        try:
            if self._error is not None:
                raise StreamClosed(f"the IPC connection is closed: {self._error}")
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._calls[ident] = future
            assert self._transport is not None
            self._transport.write(_wire.encode_frame({"id": ident, "op": op,
                                                      "request": request}))
            await future
        except BaseException:
            self._streams.pop(ident, None)
            raise

        def close_remote() -> None:
            if self._streams.pop(ident, None) is not None and self._transport is not None \
                    and not self._transport.is_closing():
                self._transport.write(_wire.encode_frame({"id": ident, "close": True}))
        sub._on_close = close_remote
        return sub

    # -- operations --------------------------------------------------------------

    async def publish_to_topic(self, topic: str, message: Any) -> None:
        await self._request("PublishToTopic", {"topic": topic,
                                               "publishMessage": _wire.publish_message(message)})

    async def subscribe_to_topic(self, topic: str, receive_mode: ReceiveMode | str | None = None
                                 ) -> Subscription:
        request: dict[str, Any] = {"topic": topic}
        if receive_mode is not None:
            request["receiveMode"] = str(ReceiveMode(receive_mode))
        return await self._stream("SubscribeToTopic", request, topic, _wire.event_message)

    async def publish_to_iot_core(self, topic: str, payload: bytes | str, qos: int = 0) -> None:
        await self._request("PublishToIoTCore", {"topicName": topic, "qos": str(qos),
                                                 "payload": _wire.b64encode(_payload(payload))})

    async def subscribe_to_iot_core(self, topic: str, qos: int = 0) -> Subscription:
        return await self._stream("SubscribeToIoTCore", {"topicName": topic, "qos": str(qos)},
                                  topic, _wire.iot_core_message)

    async def get_configuration(self, key_path: Sequence[str] = (),
                                component_name: str | None = None) -> Any:
        request: dict[str, Any] = {"keyPath": list(key_path)}
        if component_name:
            request["componentName"] = component_name
        return (await self._request("GetConfiguration", request))["value"]

    async def update_configuration(self, key_path: Sequence[str],
                                   value_to_merge: Mapping[str, Any],
                                   timestamp: float | None = None) -> None:
        request: dict[str, Any] = {"keyPath": list(key_path), "valueToMerge": dict(value_to_merge)}
        if timestamp is not None:
            request["timestamp"] = timestamp
        await self._request("UpdateConfiguration", request)

    async def subscribe_to_configuration_update(
        self, key_path: Sequence[str] = (), component_name: str | None = None
    ) -> Subscription:
        request: dict[str, Any] = {"keyPath": list(key_path)}
        if component_name:
            request["componentName"] = component_name
        return await self._stream("SubscribeToConfigurationUpdate", request, "/".join(key_path),
                                  lambda event: event["configurationUpdateEvent"])

    async def update_state(self, state: str) -> None:
        await self._request("UpdateState", {"state": state})

    async def defer_component_update(self, deployment_id: str, message: str = "",
                                     recheck_after_ms: int = 0) -> None:
        await self._request("DeferComponentUpdate", {"deploymentId": deployment_id,
                                                     "message": message,
                                                     "recheckAfterMs": recheck_after_ms})

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Any registered operation by its Greengrass name (the CLI's operations too)."""
        return await self._request(operation, request)

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._lost(StreamClosed("the client closed the connection"))
        await asyncio.sleep(0)


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
    """A blocking stream of messages for :class:`SyncIpcClient` (iterate, or ``receive``)."""

    _END = object()

    def __init__(self, client: SyncIpcClient, ident: int, maxsize: int) -> None:
        self._client = client
        self._ident = ident
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
        """The next message; raises StreamClosed at the end, TimeoutError after ``timeout``."""
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
            self._client._close_stream(self._ident)
            self._put(self._END)


class SyncIpcClient:
    """A blocking client for plain scripts: a socket plus one background reader thread.

    ``on_message`` callbacks given to the subscribe methods run on that thread.
    """

    def __init__(self, path: str, token: str, *, component_name: str | None = None,
                 timeout: float = 10.0, max_frame: int = _wire.DEFAULT_MAX_FRAME,
                 queue_size: int = 1000) -> None:
        self.timeout = timeout
        self.queue_size = queue_size
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._decoder = _wire.FrameDecoder(max_frame)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._streams: dict[int, tuple[SyncStream, Callable[[Any], Any],
                                       Callable[[Any], None] | None]] = {}
        self._error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, name="ipc-reader", daemon=True)
        self._reader.start()
        response = self._request("Connect", {"authToken": token,
                                             "componentName": component_name}, ident=0)
        self.component: str = response["componentName"]

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(1 << 16)
                if not data:
                    raise StreamClosed("the IPC server closed the connection")
                for frame in self._decoder.feed(data):
                    self._dispatch(frame)
                if self._decoder.error is not None:
                    raise self._decoder.error
        except BaseException as exc:
            with self._lock:
                self._error = self._error or exc
                calls = list(self._calls.values())
                self._calls.clear()
                streams = list(self._streams.values())
                self._streams.clear()
            for event, box in calls:
                box.append({"error": {"type": "StreamClosed", "message": str(exc)}})
                event.set()
            for stream, _, _ in streams:
                stream.closed = True
                stream._put(SyncStream._END)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        ident = frame.get("id")
        if "event" in frame:
            entry = self._streams.get(ident)  # type: ignore[arg-type]
            if entry is not None:
                stream, convert, callback = entry
                item = convert(frame["event"])
                if callback is not None:
                    callback(item)
                else:
                    stream._put(item)
            return
        if "end" in frame:
            with self._lock:
                entry = self._streams.pop(ident, None)  # type: ignore[arg-type]
            if entry is not None:
                entry[0].closed = True
                entry[0]._put(SyncStream._END)
            return
        if ident is None:
            error = frame.get("error", {})
            raise error_from_wire(error.get("type", ""), error.get("message", ""))
        with self._lock:
            call = self._calls.pop(ident, None)
        if call is not None:
            call[1].append(frame)
            call[0].set()

    def _request(self, op: str, request: dict[str, Any], ident: int | None = None
                 ) -> dict[str, Any]:
        ident = next(self._ids) if ident is None else ident
        event, box = threading.Event(), []  # type: ignore[var-annotated]
        with self._lock:
            if self._error is not None:
                raise StreamClosed(f"the IPC connection is closed: {self._error}")
            self._calls[ident] = (event, box)
            self._sock.sendall(_wire.encode_frame({"id": ident, "op": op, "request": request}))
        if not event.wait(self.timeout):
            with self._lock:
                self._calls.pop(ident, None)
            raise TimeoutError(f"no answer to {op} within {self.timeout} s")
        frame = box[0]
        if "error" in frame:
            error = frame["error"]
            raise error_from_wire(error.get("type", ""), error.get("message", ""))
        result: dict[str, Any] = frame.get("response") or {}
        return result

    def _stream(self, op: str, request: dict[str, Any], convert: Callable[[Any], Any],
                on_message: Callable[[Any], None] | None) -> SyncStream:
        ident = next(self._ids)
        stream = SyncStream(self, ident, self.queue_size)
        with self._lock:
            self._streams[ident] = (stream, convert, on_message)
        try:
            self._request(op, request, ident)
        except BaseException:
            with self._lock:
                self._streams.pop(ident, None)
            raise
        return stream

    def _close_stream(self, ident: int) -> None:
        with self._lock:
            if self._streams.pop(ident, None) is not None and self._error is None:
                self._sock.sendall(_wire.encode_frame({"id": ident, "close": True}))

    def publish_to_topic(self, topic: str, message: Any) -> None:
        self._request("PublishToTopic", {"topic": topic,
                                         "publishMessage": _wire.publish_message(message)})

    def subscribe_to_topic(self, topic: str, receive_mode: ReceiveMode | str | None = None, *,
                           on_message: Callable[[Message], None] | None = None) -> SyncStream:
        request: dict[str, Any] = {"topic": topic}
        if receive_mode is not None:
            request["receiveMode"] = str(ReceiveMode(receive_mode))
        return self._stream("SubscribeToTopic", request, _wire.event_message, on_message)

    def publish_to_iot_core(self, topic: str, payload: bytes | str, qos: int = 0) -> None:
        self._request("PublishToIoTCore", {"topicName": topic, "qos": str(qos),
                                           "payload": _wire.b64encode(_payload(payload))})

    def subscribe_to_iot_core(self, topic: str, qos: int = 0, *,
                              on_message: Callable[[Message], None] | None = None
                              ) -> SyncStream:
        return self._stream("SubscribeToIoTCore", {"topicName": topic, "qos": str(qos)},
                            _wire.iot_core_message, on_message)

    def get_configuration(self, key_path: Sequence[str] = (),
                          component_name: str | None = None) -> Any:
        request: dict[str, Any] = {"keyPath": list(key_path)}
        if component_name:
            request["componentName"] = component_name
        return self._request("GetConfiguration", request)["value"]

    def update_configuration(self, key_path: Sequence[str], value_to_merge: Mapping[str, Any],
                             timestamp: float | None = None) -> None:
        request: dict[str, Any] = {"keyPath": list(key_path), "valueToMerge": dict(value_to_merge)}
        if timestamp is not None:
            request["timestamp"] = timestamp
        self._request("UpdateConfiguration", request)

    def subscribe_to_configuration_update(
        self, key_path: Sequence[str] = (), component_name: str | None = None, *,
        on_message: Callable[[dict[str, Any]], None] | None = None
    ) -> SyncStream:
        request: dict[str, Any] = {"keyPath": list(key_path)}
        if component_name:
            request["componentName"] = component_name
        return self._stream("SubscribeToConfigurationUpdate", request,
                            lambda event: event["configurationUpdateEvent"], on_message)

    def update_state(self, state: str) -> None:
        self._request("UpdateState", {"state": state})

    def defer_component_update(self, deployment_id: str, message: str = "",
                               recheck_after_ms: int = 0) -> None:
        self._request("DeferComponentUpdate", {"deploymentId": deployment_id, "message": message,
                                               "recheckAfterMs": recheck_after_ms})

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._request(operation, request)

    def infer(self, component: str, image: bytes, name: str = "") -> dict[str, Any]:
        """``component``'s result message for one encoded image (the ``Infer`` operation)."""
        reply = self.call("Infer", _infer_request(component, image, name))
        result: dict[str, Any] = reply["result"]
        return result

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
