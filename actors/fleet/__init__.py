"""Fleet deployments on existing engines: a component registry on S3, thing groups, and
deployments to many devices over an MQTT broker.

- :class:`Registry`: published component versions, thing groups, deployment documents
  on S3 (the layout in :mod:`._registry`).
- :class:`Controller`: creates a :class:`FleetDeployment` and rolls it out
  (:class:`Rollout`, :class:`AbortCriterion`, per-device timeout).
- :class:`DeviceAgent`: beside a Nucleus, takes the device's fleet deployments into its
  deployment queue and reports on the topics of :mod:`._topics`.
- :class:`BrokerSettings`: where the broker is and the client's certificate.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._agent import DeviceAgent
    from ._controller import Controller, Execution, RolloutResult
    from ._errors import ComponentVersionExists, FleetError, NotInRegistry, RegistryError
    from ._link import BrokerSettings
    from ._model import AbortCriterion, ExecutionStatus, FleetDeployment, Rollout
    from ._registry import PublishedComponent, Registry
    from ._s3 import RegistryUrl
    from ._topics import mosquitto_acl

# Loaded on first use: the command line's parser imports this package for every verb.
_LAZY = {
    "DeviceAgent": "._agent", "Controller": "._controller", "Execution": "._controller",
    "RolloutResult": "._controller", "ComponentVersionExists": "._errors",
    "FleetError": "._errors", "NotInRegistry": "._errors", "RegistryError": "._errors",
    "BrokerSettings": "._link", "AbortCriterion": "._model", "ExecutionStatus": "._model",
    "FleetDeployment": "._model", "Rollout": "._model", "PublishedComponent": "._registry",
    "Registry": "._registry", "RegistryUrl": "._s3", "mosquitto_acl": "._topics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AbortCriterion",
    "BrokerSettings",
    "ComponentVersionExists",
    "Controller",
    "DeviceAgent",
    "Execution",
    "ExecutionStatus",
    "FleetDeployment",
    "FleetError",
    "NotInRegistry",
    "PublishedComponent",
    "Registry",
    "RegistryError",
    "RegistryUrl",
    "Rollout",
    "RolloutResult",
    "mosquitto_acl",
]
