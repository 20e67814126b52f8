"""The aiomqtt client the fleet link and the MQTT bridge use, against a real socket."""

from __future__ import annotations

import asyncio
import gc

import anyio
import pytest

from actors.ipc._mqtt_client import Client

pytestmark = pytest.mark.anyio


async def test_a_connect_cancelled_before_the_connack_then_closed_raises_nothing() -> None:
    """A broker that never answers the CONNECT: the connect is cancelled (a device
    stopped while connecting), then the broker closes the socket. The loop's reader
    callback must not raise CancelledError (the loop guard would see it)."""
    accepted: list[anyio.abc.SocketStream] = []
    got_connect = anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)
        await stream.receive()  # the CONNECT
        got_connect.set()
        await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    client = Client("127.0.0.1", port, identifier="never-acknowledged", timeout=60)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        connecting = anyio.CancelScope()
        tg.start_soon(_connect, client, connecting)
        with anyio.fail_after(10):
            await got_connect.wait()
        connecting.cancel()
        await anyio.sleep(0.1)  # the connect sees its cancellation
        await accepted[0].aclose()  # the broker goes: paho reads the end of the stream
        with anyio.fail_after(10):
            while client._client.socket() is not None:
                await asyncio.sleep(0.02)
        tg.cancel_scope.cancel()


async def _connect(client: Client, scope: anyio.CancelScope) -> None:
    with scope:
        async with client:
            await anyio.sleep_forever()


async def test_an_unexpected_disconnection_is_not_left_unretrieved() -> None:
    """With ``on_message`` set nothing iterates ``messages``, which is what reads the
    error of an unexpected disconnection in aiomqtt: leaving the client must read it, or
    asyncio reports "Future exception was never retrieved" (the loop guard would see it
    when the future is collected)."""
    closed = anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()  # the CONNECT
        await stream.send(b"\x20\x02\x00\x00")  # CONNACK, accepted (MQTT 3.1.1)
        await anyio.sleep(0.1)
        await stream.aclose()  # the broker goes
        closed.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        client = Client("127.0.0.1", port, identifier="dropped", timeout=10)
        client.on_message = lambda topic, payload: None
        async with client:
            with anyio.fail_after(10):
                await closed.wait()
                while not client._disconnected.done():
                    await asyncio.sleep(0.02)
        del client  # its future's error is not read here: that is the client's job
        gc.collect()  # a future never retrieved is reported when it is collected
        tg.cancel_scope.cancel()
