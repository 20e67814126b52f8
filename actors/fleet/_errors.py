"""Errors of the fleet side: the registry, fleet deployments, the device agent."""

from __future__ import annotations

from ..kernel import ActorsError


class FleetError(ActorsError, RuntimeError):
    """A fleet operation failed; the message says what and what to do."""


class RegistryError(FleetError):
    """The component registry refused or could not do something (names the object)."""


class ComponentVersionExists(RegistryError):
    """A component version is already in the registry: versions are immutable."""


class NotInRegistry(RegistryError, LookupError):
    """A component version, group or deployment is not in the registry."""
