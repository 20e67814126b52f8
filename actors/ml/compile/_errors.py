"""Errors of the model compiler."""

from __future__ import annotations

from ...errors import ActorsError


class CompileError(ActorsError, ValueError):
    """A model cannot be compiled: malformed, or an operator or shape the compiler lacks."""


class ToolchainMissing(ActorsError, FileNotFoundError):
    """The C compiler for the requested target is not installed."""
