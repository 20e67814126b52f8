"""MQTT topic names, topic filters and the subscription trie that matches them.

The rules are MQTT 3.1.1 section 4.7: levels split on ``/``; ``+`` matches
exactly one level, ``#`` (last level only) matches its parent level and every
level below; a publish topic holds no wildcard; topics starting with ``$`` are
not matched by a filter whose first level is a wildcard. Greengrass also
refuses ``*`` in a publish topic (it is its authorization glob).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from ._errors import InvalidArgumentsError

T = TypeVar("T")

MAX_TOPIC_BYTES = 65535


def check_topic_name(topic: object) -> str:
    """``topic`` if it is a valid publish topic; raises :class:`InvalidArgumentsError`."""
    if not isinstance(topic, str) or not topic:
        raise InvalidArgumentsError(f"publish topic must be a non-empty string, got {topic!r}")
    if "+" in topic or "#" in topic or "*" in topic:
        raise InvalidArgumentsError(
            f"publish topic {topic!r} must not contain a wildcard (+, # or *)")
    if "\x00" in topic or len(topic.encode()) > MAX_TOPIC_BYTES:
        raise InvalidArgumentsError(f"publish topic {topic[:80]!r} has a NUL or is too long")
    return topic


def check_topic_filter(topic_filter: object) -> str:
    """``topic_filter`` if it is a valid subscription filter; raises InvalidArgumentsError."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise InvalidArgumentsError(
            f"subscription topic must be a non-empty string, got {topic_filter!r}")
    if "\x00" in topic_filter or len(topic_filter.encode()) > MAX_TOPIC_BYTES:
        raise InvalidArgumentsError(f"topic filter {topic_filter[:80]!r} has a NUL or is too long")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise InvalidArgumentsError(
                f"topic filter {topic_filter!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise InvalidArgumentsError(
                f"topic filter {topic_filter!r}: '+' must be a whole level")
    return topic_filter


def is_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (the reference the trie is tested against)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


class _Node(Generic[T]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: list[T] = []


class TopicTrie(Generic[T]):
    """Values stored under topic filters; :meth:`match` returns those whose filter matches.

    Matching walks one trie branch per level plus the ``+`` and ``#`` branches,
    so its cost depends on the topic's depth, not on the number of
    subscriptions. Callers cache results per topic (see the broker).
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, topic_filter: str, value: T) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.values.append(value)
        self._size += 1

    def remove(self, topic_filter: str, value: T) -> bool:
        """Remove one ``value`` stored under ``topic_filter``; prune empty branches."""
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        try:
            node.values.remove(value)
        except ValueError:
            return False
        self._size -= 1
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.values or child.children:
                break
            del parent.children[level]
        return True

    def match(self, topic: str) -> list[T]:
        """Every value whose filter matches the (wildcard-free) ``topic``."""
        out: list[T] = []
        levels = topic.split("/")
        last = len(levels)
        dollar = topic.startswith("$")
        # Iterative walk: (node, index of the next level to match).
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            children = node.children
            if i == last:
                out.extend(node.values)
                hash_child = children.get("#")
                if hash_child is not None:  # "a/#" matches "a"
                    out.extend(hash_child.values)
                continue
            if not (i == 0 and dollar):
                hash_child = children.get("#")
                if hash_child is not None:
                    out.extend(hash_child.values)
                plus = children.get("+")
                if plus is not None:
                    stack.append((plus, i + 1))
            exact = children.get(levels[i])
            if exact is not None:
                stack.append((exact, i + 1))
        return out

    def __iter__(self) -> Iterator[T]:
        stack = [self._root]
        while stack:
            node = stack.pop()
            yield from node.values
            stack.extend(node.children.values())
