"""The MQTT topics of fleet deployments, modelled on AWS IoT Jobs, and the broker ACLs.

==========================================================  =========  ===================
topic                                                       direction  what
==========================================================  =========  ===================
``fleet/things/<thing>/jobs/<group>/notify``                to device  the group's current
                                                                       deployment (retained,
                                                                       QoS 1; its document
                                                                       inside up to 32 KiB):
                                                                       IoT Jobs'
                                                                       ``notify-next``
``fleet/things/<thing>/jobs/<deploymentId>/update``         to fleet   the device's status of
                                                                       one deployment
                                                                       (retained, QoS 1):
                                                                       ``UpdateJobExecution``
``fleet/things/<thing>/status``                             to fleet   the device's health
                                                                       (retained, QoS 1)
``fleet/things/<thing>/connection``                         to fleet   {"connected": ...}
                                                                       (retained; the will
                                                                       says false)
==========================================================  =========  ===================

A canceled deployment's notices are replaced (retained, same topic) by
``{"thingName", "deploymentId", "groupName", "canceled": true}``: a device
that has not started it never does and reports CANCELED. ``fleet cancel``
also publishes ``fleet/deployments/<deploymentId>/cancel`` (retained, for a
running controller; controllers only).

"Get next" is the retained notice itself: a device that subscribes (on every
connection) receives each of its groups' current deployment, so a device that
was offline, or whose persistent session the broker lost, catches up; the
QoS 1 persistent session delivers the notices queued while it was away.

Each device connects with its own certificate, whose common name is its thing
name (mosquitto's ``use_identity_as_username``); :func:`mosquitto_acl` lets it
read only its own notices and write only its own status.
"""

from __future__ import annotations

PREFIX = "fleet/things"


def notify(thing: str, group: str) -> str:
    return f"{PREFIX}/{thing}/jobs/{_segment(group)}/notify"


def notify_filter(thing: str) -> str:
    return f"{PREFIX}/{thing}/jobs/+/notify"


def update(thing: str, deployment_id: str) -> str:
    return f"{PREFIX}/{thing}/jobs/{deployment_id}/update"


def update_filter(deployment_id: str = "+", thing: str = "+") -> str:
    return f"{PREFIX}/{thing}/jobs/{deployment_id}/update"


def status(thing: str) -> str:
    return f"{PREFIX}/{thing}/status"


def connection(thing: str) -> str:
    return f"{PREFIX}/{thing}/connection"


def thing_of(topic: str) -> str:
    """The thing a fleet topic is about."""
    return topic.split("/")[2]


def _segment(group: str) -> str:
    # "thinggroup/line-1" -> "thinggroup:line-1": one topic level per group.
    return group.replace("/", ":")


def mosquitto_acl(controllers: list[str]) -> str:
    """A mosquitto ACL file: each thing (its certificate's common name) reads its own
    notices and writes its own status; ``controllers`` read and write every fleet topic."""
    lines = ["# edge-actors fleet ACLs (mosquitto acl_file); made by `edge-actors fleet acl`.",
             "# Each device authenticates with its own certificate (use_identity_as_username",
             "# true): %u is its common name, the thing name.",
             f"pattern read {PREFIX}/%u/jobs/+/notify",
             f"pattern write {PREFIX}/%u/jobs/+/update",
             f"pattern write {PREFIX}/%u/status",
             f"pattern write {PREFIX}/%u/connection",
             ""]
    for name in controllers:
        lines += [f"user {name}", "topic readwrite fleet/#", ""]
    return "\n".join(lines)
