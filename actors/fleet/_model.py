"""The fleet deployment document and its policies, in the shape of Greengrass's
CreateDeployment (``components``, ``deploymentPolicies``, ``iotJobConfiguration``).

What we add: ``recipes``, the recipes of the resolved components (so a device
reads one document, not one object per recipe), and ``timeoutConfig`` also in
seconds (``inProgressTimeoutInSeconds``) beside IoT Jobs' minutes.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._errors import FleetError


class ExecutionStatus(enum.StrEnum):
    """A device's status of one deployment, as IoT Jobs names a job execution's."""

    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self not in (ExecutionStatus.QUEUED, ExecutionStatus.IN_PROGRESS)


@dataclass(frozen=True)
class Rollout:
    """``jobExecutionsRolloutConfig``: how fast devices are notified."""

    maximum_per_minute: int = 1000
    base_rate_per_minute: int | None = None  # exponentialRate, when set
    increment_factor: float = 2.0
    notified_to_increase: int | None = None  # rateIncreaseCriteria
    succeeded_to_increase: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"maximumPerMinute": self.maximum_per_minute}
        if self.base_rate_per_minute is not None:
            criteria = {k: v for k, v in (("numberOfNotifiedThings", self.notified_to_increase),
                                          ("numberOfSucceededThings",
                                           self.succeeded_to_increase)) if v is not None}
            out["exponentialRate"] = {"baseRatePerMinute": self.base_rate_per_minute,
                                      "incrementFactor": self.increment_factor,
                                      "rateIncreaseCriteria": criteria}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollout:
        rate = data.get("exponentialRate") or {}
        criteria = rate.get("rateIncreaseCriteria") or {}
        return cls(int(data.get("maximumPerMinute", 1000)), rate.get("baseRatePerMinute"),
                   float(rate.get("incrementFactor", 2.0)),
                   criteria.get("numberOfNotifiedThings"),
                   criteria.get("numberOfSucceededThings"))


@dataclass(frozen=True)
class AbortCriterion:
    """``abortConfig.criteriaList[]``: cancel the rollout when ``failure_type`` reaches
    ``threshold_percentage`` of the executed devices, once ``min_executed`` have finished."""

    failure_type: str  # FAILED | REJECTED | TIMED_OUT | ALL
    threshold_percentage: float
    min_executed: int
    action: str = "CANCEL"

    def to_json(self) -> dict[str, Any]:
        return {"failureType": self.failure_type, "action": self.action,
                "thresholdPercentage": self.threshold_percentage,
                "minNumberOfExecutedThings": self.min_executed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AbortCriterion:
        kind = str(data.get("failureType", "FAILED")).upper()
        if kind not in ("FAILED", "REJECTED", "TIMED_OUT", "ALL"):
            raise FleetError(f"abort criterion failureType {kind!r}: expected FAILED, "
                             "REJECTED, TIMED_OUT or ALL")
        return cls(kind, float(data["thresholdPercentage"]),
                   int(data.get("minNumberOfExecutedThings", 1)),
                   str(data.get("action", "CANCEL")))

    def met(self, counts: Mapping[ExecutionStatus, int]) -> bool:
        executed = sum(counts.get(s, 0) for s in (
            ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.REJECTED,
            ExecutionStatus.TIMED_OUT))
        if executed < max(self.min_executed, 1):
            return False
        kinds = (ExecutionStatus.FAILED, ExecutionStatus.REJECTED, ExecutionStatus.TIMED_OUT) \
            if self.failure_type == "ALL" else (ExecutionStatus(self.failure_type),)
        failures = sum(counts.get(k, 0) for k in kinds)
        return failures * 100.0 >= self.threshold_percentage * executed


FAILURE_HANDLING = ("ROLLBACK", "DO_NOTHING")
UPDATE_ACTIONS = ("NOTIFY_COMPONENTS", "SKIP_NOTIFY_COMPONENTS")
_POLICY_KEYS = ("failureHandlingPolicy", "componentUpdatePolicy",
                "configurationValidationPolicy")


def deployment_policies(data: Any, where: str = "deploymentPolicies") -> dict[str, Any]:
    """Greengrass's ``deploymentPolicies``, checked key by key as CreateDeployment checks
    them (an unknown key, a wrong type or value is refused, the key named), as
    :class:`FleetDeployment`'s keyword arguments; a missing key takes Greengrass's default
    (ROLLBACK; NOTIFY_COMPONENTS, 60 s; 30 s)."""
    _structure(data, where, _POLICY_KEYS)
    out: dict[str, Any] = {}
    if "failureHandlingPolicy" in data:
        out["failure_handling"] = _choice(data["failureHandlingPolicy"],
                                          f"{where}.failureHandlingPolicy", FAILURE_HANDLING)
    if "componentUpdatePolicy" in data:
        update = data["componentUpdatePolicy"]
        key = f"{where}.componentUpdatePolicy"
        _structure(update, key, ("action", "timeoutInSeconds"))
        if "action" in update:
            out["component_update_action"] = _choice(update["action"], f"{key}.action",
                                                      UPDATE_ACTIONS)
        if "timeoutInSeconds" in update:
            out["component_update_timeout"] = _seconds(update["timeoutInSeconds"],
                                                        f"{key}.timeoutInSeconds")
    if "configurationValidationPolicy" in data:
        validation = data["configurationValidationPolicy"]
        key = f"{where}.configurationValidationPolicy"
        _structure(validation, key, ("timeoutInSeconds",))
        if "timeoutInSeconds" in validation:
            out["configuration_validation_timeout"] = _seconds(
                validation["timeoutInSeconds"], f"{key}.timeoutInSeconds")
    return out


_JOB_KEYS = ("jobExecutionsRolloutConfig", "abortConfig", "timeoutConfig")


def iot_job_configuration(data: Any, where: str = "iotJobConfiguration") -> dict[str, Any]:
    """Greengrass's ``iotJobConfiguration``, checked key by key as CreateDeployment checks
    it (unknown keys, missing required ones, types, enumerations and bounds: at most
    1,000 devices a minute, an increment factor of 1 to 5, a threshold of at most 100 %),
    as :class:`FleetDeployment`'s keyword arguments ``rollout``, ``abort`` and
    ``timeout_seconds``. ``timeoutConfig`` also takes ``inProgressTimeoutInSeconds``."""
    _structure(data, where, _JOB_KEYS)
    out: dict[str, Any] = {}
    if "jobExecutionsRolloutConfig" in data:
        config = data["jobExecutionsRolloutConfig"]
        key = f"{where}.jobExecutionsRolloutConfig"
        _structure(config, key, ("exponentialRate", "maximumPerMinute"))
        rollout: dict[str, Any] = {}
        if "maximumPerMinute" in config:
            rollout["maximum_per_minute"] = _number(
                config["maximumPerMinute"], f"{key}.maximumPerMinute", 1, 1000)
        if "exponentialRate" in config:
            rate = config["exponentialRate"]
            key = f"{key}.exponentialRate"
            _structure(rate, key, ("baseRatePerMinute", "incrementFactor",
                                   "rateIncreaseCriteria"), required=True)
            rollout["base_rate_per_minute"] = _number(
                rate["baseRatePerMinute"], f"{key}.baseRatePerMinute", 1, 1000)
            rollout["increment_factor"] = float(_number(
                rate["incrementFactor"], f"{key}.incrementFactor", 1, 5, integer=False))
            criteria = rate["rateIncreaseCriteria"]
            key = f"{key}.rateIncreaseCriteria"
            _structure(criteria, key, ("numberOfNotifiedThings", "numberOfSucceededThings"))
            if "numberOfNotifiedThings" in criteria:
                rollout["notified_to_increase"] = _number(
                    criteria["numberOfNotifiedThings"], f"{key}.numberOfNotifiedThings", 1)
            if "numberOfSucceededThings" in criteria:
                rollout["succeeded_to_increase"] = _number(
                    criteria["numberOfSucceededThings"], f"{key}.numberOfSucceededThings", 1)
        out["rollout"] = Rollout(**rollout)
    if "abortConfig" in data:
        config = data["abortConfig"]
        key = f"{where}.abortConfig"
        _structure(config, key, ("criteriaList",), required=True)
        criteria = config["criteriaList"]
        if not isinstance(criteria, list) or not criteria:
            raise FleetError(f"{key}.criteriaList: {_shown(criteria)}: expected a list of "
                             "one criterion or more")
        abort = []
        for i, criterion in enumerate(criteria):
            at = f"{key}.criteriaList[{i}]"
            _structure(criterion, at, ("failureType", "action", "thresholdPercentage",
                                       "minNumberOfExecutedThings"), required=True)
            abort.append(AbortCriterion(
                _choice(criterion["failureType"], f"{at}.failureType",
                        ("FAILED", "REJECTED", "TIMED_OUT", "ALL")),
                float(_number(criterion["thresholdPercentage"], f"{at}.thresholdPercentage",
                              0, 100, integer=False)),
                _number(criterion["minNumberOfExecutedThings"],
                        f"{at}.minNumberOfExecutedThings", 1),
                _choice(criterion["action"], f"{at}.action", ("CANCEL",))))
        out["abort"] = tuple(abort)
    if "timeoutConfig" in data:
        config = data["timeoutConfig"]
        key = f"{where}.timeoutConfig"
        _structure(config, key, ("inProgressTimeoutInMinutes", "inProgressTimeoutInSeconds"))
        if "inProgressTimeoutInSeconds" in config:
            out["timeout_seconds"] = float(_number(
                config["inProgressTimeoutInSeconds"], f"{key}.inProgressTimeoutInSeconds",
                0, integer=False))
        elif "inProgressTimeoutInMinutes" in config:
            out["timeout_seconds"] = 60.0 * _number(
                config["inProgressTimeoutInMinutes"], f"{key}.inProgressTimeoutInMinutes", 1)
    return out


def _number(value: Any, where: str, low: float, high: float | None = None, *,
            integer: bool = True) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low or (
            high is not None and value > high):
        what = "a whole number" if integer else "a number"
        span = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
        raise FleetError(f"{where}: {_shown(value)}: expected {what} {span}")
    return value


def _structure(data: Any, where: str, keys: tuple[str, ...], required: bool = False) -> None:
    if not isinstance(data, Mapping):
        raise FleetError(f"{where}: expected an object with {', '.join(keys)}; "
                         f"got {_shown(data)}")
    unknown = [k for k in data if k not in keys]
    if unknown:
        raise FleetError(f"{where}: unknown key {unknown[0]!r}, must be one of: "
                         f"{', '.join(keys)}")
    missing = [k for k in keys if k not in data] if required else []
    if missing:
        raise FleetError(f"{where}: missing {', '.join(missing)} (required)")


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise FleetError(f"{where}: {_shown(value)}: expected {' or '.join(allowed)}")
    return value


def _seconds(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FleetError(f"{where}: {_shown(value)}: expected a whole number of seconds "
                         "(0 or more)")
    return value


def _shown(value: Any) -> str:
    return "null" if value is None else orjson.dumps(value).decode() \
        if isinstance(value, (str, int, float, bool, list, dict)) else repr(value)


# A fleet deployment's target, which is the group of its deployments on a device.
TARGET_KINDS = ("thinggroup", "thing")


@dataclass(frozen=True)
class FleetDeployment:
    """One fleet deployment: what a target (a thing group or a thing) should run."""

    target: str  # "thinggroup/NAME" or "thing/NAME"
    components: Mapping[str, str]  # root components: name -> version
    configuration_update: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    failure_handling: str = "ROLLBACK"
    component_update_action: str = "NOTIFY_COMPONENTS"
    component_update_timeout: int = 60
    configuration_validation_timeout: int = 30
    rollout: Rollout = field(default_factory=Rollout)
    abort: tuple[AbortCriterion, ...] = ()
    timeout_seconds: float | None = None  # per device, from its IN_PROGRESS
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    deployment_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deployment_name: str = ""
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        kind, _, name = self.target.partition("/")
        if kind not in TARGET_KINDS or not name:
            raise FleetError(f"--target {self.target!r}: expected thinggroup/NAME or thing/NAME")
        deployment_policies(self.policies_json())  # the same checks as a document's
        unknown = set(self.configuration_update) - set(self.components) - set(self.recipes)
        if unknown:
            raise FleetError(f"configuration update for {', '.join(sorted(unknown))}, which "
                             "the deployment does not include")

    def to_json(self) -> dict[str, Any]:
        components: dict[str, Any] = {}
        for name in sorted({*self.components, *self.configuration_update}):
            entry: dict[str, Any] = {}
            if name in self.components:
                entry["componentVersion"] = self.components[name]
            update = self.configuration_update.get(name)
            if update:
                out: dict[str, Any] = {}
                if update.get("merge") is not None:  # Greengrass carries MERGE as a JSON string
                    out["merge"] = orjson.dumps(update["merge"]).decode()
                if update.get("reset") is not None:
                    out["reset"] = list(update["reset"])
                entry["configurationUpdate"] = out
            components[name] = entry
        job: dict[str, Any] = {"jobExecutionsRolloutConfig": self.rollout.to_json()}
        if self.abort:
            job["abortConfig"] = {"criteriaList": [c.to_json() for c in self.abort]}
        if self.timeout_seconds is not None:
            timeout: dict[str, Any] = {"inProgressTimeoutInSeconds": self.timeout_seconds}
            if self.timeout_seconds >= 60 and self.timeout_seconds % 60 == 0:
                timeout["inProgressTimeoutInMinutes"] = int(self.timeout_seconds // 60)
            job["timeoutConfig"] = timeout
        return {
            "deploymentId": self.deployment_id,
            "deploymentName": self.deployment_name or self.deployment_id,
            "targetArn": self.target,
            "components": components,
            "deploymentPolicies": self.policies_json(),
            "iotJobConfiguration": job,
            "creationTimestamp": self.created,
            "recipes": {n: dict(r) for n, r in self.recipes.items()},
        }

    def policies_json(self) -> dict[str, Any]:
        """``deploymentPolicies``, in Greengrass's shape."""
        return {"failureHandlingPolicy": self.failure_handling,
                "componentUpdatePolicy": {"action": self.component_update_action,
                                          "timeoutInSeconds": self.component_update_timeout},
                "configurationValidationPolicy": {
                    "timeoutInSeconds": self.configuration_validation_timeout}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FleetDeployment:
        components: dict[str, str] = {}
        updates: dict[str, dict[str, Any]] = {}
        for name, entry in (data.get("components") or {}).items():
            if "componentVersion" in entry:
                components[name] = str(entry["componentVersion"])
            update = entry.get("configurationUpdate")
            if update:
                merge = update.get("merge")
                updates[name] = {"merge": orjson.loads(merge) if isinstance(merge, str)
                                 else merge, "reset": update.get("reset")}
        job = data.get("iotJobConfiguration") or {}
        timeout = job.get("timeoutConfig") or {}
        seconds = timeout.get("inProgressTimeoutInSeconds")
        if seconds is None and timeout.get("inProgressTimeoutInMinutes") is not None:
            seconds = float(timeout["inProgressTimeoutInMinutes"]) * 60
        return cls(
            target=str(data.get("targetArn", "")), components=components,
            configuration_update=updates,
            **deployment_policies(data.get("deploymentPolicies", {})),
            rollout=Rollout.from_json(job.get("jobExecutionsRolloutConfig") or {}),
            abort=tuple(AbortCriterion.from_json(c) for c in
                        (job.get("abortConfig") or {}).get("criteriaList", [])),
            timeout_seconds=seconds, recipes=data.get("recipes") or {},
            deployment_id=str(data["deploymentId"]),
            deployment_name=str(data.get("deploymentName", "")),
            created=float(data.get("creationTimestamp", 0.0)))


INLINE_LIMIT = 32 * 1024
"""The largest document sent inside the notice (IoT Jobs' job document limit): a
larger one is read from the registry by each device, as Greengrass reads a large
deployment document through a presigned S3 URL."""


def notice(deployment: FleetDeployment, thing: str, document_uri: str,
           inline: Any = None) -> bytes:
    """What a device is sent: which deployment of which group, where its document is, and
    the document itself when ``inline`` (its JSON) is given."""
    body = {"thingName": thing, "deploymentId": deployment.deployment_id,
            "groupName": deployment.target, "document": document_uri,
            "timestamp": time.time()}
    if inline is not None:
        body["deploymentDocument"] = inline
    return orjson.dumps(body)


def canceled_notice(deployment_id: str, group: str, thing: str) -> bytes:
    """What replaces a device's notice of a canceled deployment (retained, on the same
    topic): a device that has not started it never does, and reports CANCELED."""
    return orjson.dumps({"thingName": thing, "deploymentId": deployment_id,
                         "groupName": group, "canceled": True, "timestamp": time.time()})
