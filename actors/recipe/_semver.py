"""Dependency version ranges read the way the Greengrass nucleus reads them.

The nucleus parses ``VersionRequirement`` with semver4j's ``Requirement.buildNPM``,
whose tokenizer drops every space and splits the text at operators: ``>= 2.0.3``
is ``>=2.0.3``, ``>=1.0.0<2.0.0`` is ``>=1.0.0 <2.0.0``, ``1.0.0-2.0.0`` is a
hyphen range, and an empty text is ``*``. :func:`npm_range` rewrites such a
text into the canonical npm form that :class:`semantic_version.NpmSpec` reads,
so a range means here what it means on a Greengrass device.
"""

from __future__ import annotations

_UNARY = ("~", "^", "=", "<", "≤", ">", "≥")


def npm_range(text: str) -> str:
    """The npm-style range ``text`` in canonical form; raises ValueError when it is
    not one (as semver4j and NpmSpec would both refuse)."""
    from semantic_version import NpmSpec  # on first use (start-up time)

    if len(text) > 1000:
        raise ValueError("too long")
    text = text.replace("||", "|").replace("<=", "≤").replace(">=", "≥")
    tokens: list[str] = []  # operators and versions, spaces dropped
    version = ""
    for char in text:
        if char.isspace():
            continue
        if char in (*_UNARY, "-", "|"):
            if version:
                tokens.append(version)
                version = ""
            tokens.append(char)
        else:
            version += char
    if version:
        tokens.append(version)
    # A hyphen right after a version's digits that is followed by a letter is a
    # pre-release (1.0.0-beta), not a range: semver4j splits it, but NpmSpec keeps
    # it, so glue those back together.
    glued: list[str] = []
    for token in tokens:
        if glued and len(glued) >= 2 and glued[-1] == "-" and token[:1].isalpha() \
                and glued[-2] not in (*_UNARY, "-", "|"):
            glued.pop()
            glued[-1] += "-" + token
        else:
            glued.append(token)
    out = ""
    previous = ""
    for token in glued:
        if token == "|":
            out += " || "
        elif token == "-":
            out += " - "
        elif token in _UNARY:
            if previous and previous not in (*_UNARY, "|", "-"):
                out += " "  # "≥1.0.0<2.0.0": an implicit AND
            out += {"≤": "<=", "≥": ">="}.get(token, token)
        else:
            out += token
        previous = token
    canonical = " ".join(out.split()) or "*"
    try:
        NpmSpec(canonical)
    except ValueError:
        raise
    except Exception as exc:  # semantic_version fails on some texts with other errors
        raise ValueError(f"not a range: {exc}") from None
    return canonical
