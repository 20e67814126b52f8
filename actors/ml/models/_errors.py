"""Errors of model building and model folders."""

from __future__ import annotations

from ...errors import ActorsError


class WeightsError(ActorsError, ValueError):
    """A weights file is not a readable PyTorch state dict, or does not match the network."""


class ModelSourceMissing(ActorsError, FileNotFoundError):
    """The package that ships a model's pretrained weights is not installed."""


class ModelFolderError(ActorsError, ValueError):
    """A model folder lacks its manifest or a file the manifest names."""
