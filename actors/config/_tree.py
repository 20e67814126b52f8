"""Configuration updates as Greengrass defines them.

A component's configuration is a JSON object. A deployment's
``configurationUpdate`` first RESETs the listed JSON pointers to the recipe's
default values (``""`` resets everything), then MERGEs a JSON object into the
result: objects merge key by key, every other value (lists included) replaces.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from ..kernel import ActorsError

_MISSING = object()


class ConfigError(ActorsError, ValueError):
    """A configuration update is malformed: names the component and the pointer or key."""


def pointer_parts(pointer: str) -> list[str]:
    """RFC 6901 pointer -> unescaped parts; ``""`` is the whole document."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ConfigError(f"{pointer!r} is not a JSON pointer: it must be empty or start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def pointer_get(document: Any, pointer: str, default: Any = None) -> Any:
    node = document
    for part in pointer_parts(pointer):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new object: ``update`` merged into ``base`` (objects recursively, the rest replaced)."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def reset(config: Mapping[str, Any], defaults: Mapping[str, Any], pointers: Iterable[str]
          ) -> dict[str, Any]:
    """A new object with each pointer set back to its default (removed where the
    defaults have no value there)."""
    result: dict[str, Any] = copy.deepcopy(dict(config))
    for pointer in pointers:
        parts = pointer_parts(pointer)
        if not parts:
            result = copy.deepcopy(dict(defaults))
            continue
        default = pointer_get(defaults, pointer, _MISSING)
        parent: Any = result
        for part in parts[:-1]:
            child = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(child, dict):
                if default is _MISSING:
                    parent = None
                    break
                child = {}
                parent[part] = child
            parent = child
        if not isinstance(parent, dict):
            continue
        if default is _MISSING:
            parent.pop(parts[-1], None)
        else:
            parent[parts[-1]] = copy.deepcopy(default)
    return result


def apply_update(component: str, config: Mapping[str, Any], defaults: Mapping[str, Any],
                 update: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply a ``configurationUpdate`` ({"reset": [...], "merge": {...}}): RESET, then MERGE."""
    if not update:
        return copy.deepcopy(dict(config))
    unknown = set(update) - {"reset", "merge", "RESET", "MERGE"}
    if unknown:
        raise ConfigError(f"{component}: configurationUpdate has unknown keys "
                          f"{sorted(unknown)}; expected 'reset' and/or 'merge'")
    pointers = update.get("reset", update.get("RESET")) or []
    if not isinstance(pointers, list) or not all(isinstance(p, str) for p in pointers):
        raise ConfigError(f"{component}: configurationUpdate.reset must be a list of JSON "
                          f"pointers, got {pointers!r}")
    merge = update.get("merge", update.get("MERGE")) or {}
    if not isinstance(merge, Mapping):
        raise ConfigError(f"{component}: configurationUpdate.merge must be a JSON object, "
                          f"got {type(merge).__name__}")
    try:
        after_reset = reset(config, defaults, pointers)
    except ConfigError as exc:
        raise ConfigError(f"{component}: configurationUpdate.reset: {exc}") from None
    return deep_merge(after_reset, merge)
