"""Topic names and filters: the MQTT specification's cases, and the trie against the reference."""

from __future__ import annotations

import random

import pytest

from actors.ipc import (
    InvalidArgumentsError,
    TopicTrie,
    check_topic_filter,
    check_topic_name,
    topic_matches,
)

# (filter, topic, matches) — MQTT 3.1.1 section 4.7 and its non-normative examples.
SPEC_CASES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    ("sport/tennis/#", "sport/tennis", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "finance", True),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/tennis", "sport/tennis", True),
    ("sport/tennis", "Sport/Tennis", False),
    ("sport/tennis", "sport/tennis/", False),
    ("sport", "sport/tennis", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("#", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$aws/things/+/shadow/update", "$aws/things/cam/shadow/update", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/#", "a", True),
    ("a/#", "ab", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), SPEC_CASES)
def test_specification_cases(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected
    trie: TopicTrie[str] = TopicTrie()
    trie.add(topic_filter, "sub")
    assert (trie.match(topic) == ["sub"]) is expected


@pytest.mark.parametrize("topic_filter", ["sport/tennis#", "sport/tennis/#/ranking", "sport+",
                                          "a/b+/c", "#/a", "", "a\x00b"])
def test_invalid_filters_are_refused(topic_filter: str) -> None:
    with pytest.raises(InvalidArgumentsError):
        check_topic_filter(topic_filter)


@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "a/*", "", "x\x00"])
def test_publish_topics_refuse_wildcards(topic: str) -> None:
    with pytest.raises(InvalidArgumentsError):
        check_topic_name(topic)


def test_trie_agrees_with_the_reference_on_random_topics() -> None:
    rng = random.Random(5)
    words = ["a", "b", "c", "", "$SYS", "ml"]
    filters = set()
    while len(filters) < 300:
        levels = [rng.choice([*words, "+"]) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            levels.append("#")
        filters.add("/".join(levels))
    trie: TopicTrie[str] = TopicTrie()
    for f in filters:
        trie.add(f, f)
    for _ in range(2000):
        topic = "/".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
        expected = sorted(f for f in filters if topic_matches(f, topic))
        assert sorted(trie.match(topic)) == expected, topic
    for f in list(filters)[:150]:
        assert trie.remove(f, f)
    assert len(trie) == 150
    assert not trie.remove("never/added", "x")
