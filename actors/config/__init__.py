"""The configuration tree: JSON pointers, MERGE/RESET updates, and a crash-safe store."""

from ._store import JsonStore, atomic_write
from ._tree import ConfigError, apply_update, deep_merge, pointer_get, pointer_parts, reset

__all__ = [
    "ConfigError",
    "JsonStore",
    "apply_update",
    "atomic_write",
    "deep_merge",
    "pointer_get",
    "pointer_parts",
    "reset",
]
