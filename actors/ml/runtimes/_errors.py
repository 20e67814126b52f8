"""Errors of inference runtimes."""

from __future__ import annotations

from ...errors import ActorsError


class RuntimeUnavailable(ActorsError, ImportError):
    """The runtime's package or native library is not installed on this platform."""


class ModelLoadError(ActorsError, ValueError):
    """The runtime could not load a model file or folder."""


class InferenceError(ActorsError, ValueError):
    """A model run was given inputs of the wrong name, shape or dtype, or failed."""
