"""Fleet deployments on existing engines: a component registry on S3, thing groups, and
deployments to many devices over an MQTT broker.

- :class:`Registry`: published component versions, thing groups and deployment documents
  on S3 (layout in :mod:`._registry`).
"""

from ._errors import ComponentVersionExists, FleetError, NotInRegistry, RegistryError
from ._registry import PublishedComponent, Registry
from ._s3 import RegistryUrl

__all__ = [
    "ComponentVersionExists",
    "FleetError",
    "NotInRegistry",
    "PublishedComponent",
    "Registry",
    "RegistryError",
    "RegistryUrl",
]
