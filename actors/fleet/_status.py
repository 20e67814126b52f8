"""Reading the fleet's state back: retained messages from the broker, merged views."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import anyio
import orjson

from . import _topics as topics
from ._link import BrokerSettings

_ORDER = ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "CANCELED",
          "NOT_NOTIFIED")


def _client(settings: BrokerSettings) -> Any:
    from ..ipc._mqtt_client import Client

    return Client(settings.host, settings.port, timeout=settings.timeout, clean_session=True,
                  identifier=f"{settings.client_id or 'fleet'}-{uuid.uuid4().hex[:8]}",
                  tls_context=settings.tls_context())


async def retained(settings: BrokerSettings, topic_filter: str, *, quiet: float = 0.5,
                   timeout: float = 10.0) -> dict[str, Any]:
    """The retained messages on ``topic_filter``, by thing (the broker sends them on
    subscribe; collected until none came for ``quiet`` seconds)."""
    out: dict[str, Any] = {}
    async with _client(settings) as client:
        await client.subscribe(topic_filter, qos=1)
        with anyio.move_on_after(timeout):
            while True:
                with anyio.move_on_after(quiet) as idle:
                    message = await anext(client.messages)
                if idle.cancelled_caught:
                    break
                payload = message.payload
                if isinstance(payload, bytes | bytearray) and payload:
                    try:
                        out[topics.thing_of(str(message.topic))] = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        continue
    return out


async def publish_once(settings: BrokerSettings, topic: str, payload: bytes,
                       retain: bool = False) -> None:
    await publish_many(settings, [(topic, payload)], retain=retain)


async def publish_many(settings: BrokerSettings, messages: list[tuple[str, bytes]],
                       retain: bool = False) -> None:
    """Publish ``messages`` (QoS 1) on one connection, each acknowledged."""
    async with _client(dataclasses.replace(settings)) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


def merge_status(document: Mapping[str, Any], saved: Mapping[str, Any],
                 reports: Mapping[str, Any]) -> dict[str, Any]:
    """One view of a deployment: the controller's last view (from the registry), with
    what each device reported since (its retained status on the broker) winning over a
    status the controller set without the device (QUEUED, TIMED_OUT, CANCELED)."""
    devices: dict[str, dict[str, Any]] = {t: dict(e) for t, e in
                                          (saved.get("devices") or {}).items()}
    for thing, report in reports.items():
        entry = devices.setdefault(thing, {"thingName": thing, "status": "QUEUED"})
        if entry.get("status") in ("SUCCEEDED", "FAILED", "REJECTED") \
                and report.get("status") == "IN_PROGRESS":
            continue
        details = report.get("statusDetails") or {}
        entry.update({"status": report.get("status"),
                      "detailedDeploymentStatus": details.get("detailedDeploymentStatus", ""),
                      "failureCause": details.get("failureCause", ""),
                      "components": details.get("components", {})})
    counts = Counter(str(e.get("status")) for e in devices.values())
    summary = {k: counts[k] for k in _ORDER if counts.get(k)}
    return {"deploymentId": document.get("deploymentId"), "targetArn": document.get("targetArn"),
            "devices": devices, "summary": summary}
