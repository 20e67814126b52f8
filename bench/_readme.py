"""Regenerate the benchmark section of a README from the latest results.

The section is whatever lies between the two marker lines; everything else in
the file is left byte for byte as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._core import PEER_ROLES
from ._report import Document, limit_table, ratio_table, summary_line

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


class MarkersMissing(ValueError):
    """The README lacks the start/end markers (or has them out of order)."""


def section(document: Document, readme: Path, results_dir: Path) -> str:
    """The Markdown put between the markers: run line, ratio table, goals, chart link."""
    chart = _link(results_dir / "ratios.png", readme)
    details = _link(results_dir / "results.md", readme)
    parts = [
        f"_{summary_line(document)}_",
        "Ratio > 1 means ours is better: peer ÷ ours for times and sizes, ours ÷ peer for "
        "throughputs. Regenerate with `python -m bench` then `python -m bench --readme "
        f"{readme.name}`.",
        ratio_table(document, PEER_ROLES),
    ]
    limits = limit_table(document)
    if limits:
        parts.append(limits)
    parts += [
        f"![ours vs peers]({chart})",
        f"Every figure, baselines included: [{details}]({details}).",
    ]
    return "\n\n".join(parts)


def replace_section(text: str, body: str, name: str = "README") -> str:
    """``text`` with the lines between the markers replaced by ``body``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise MarkersMissing(
            f"{name}: needs a line '{START}' followed later by a line '{END}'; "
            "the benchmark section is written between them"
        )
    head = text[: start + len(START)]
    return f"{head}\n{body.strip()}\n{text[end:]}"


def update_readme(readme: Path, document: Document, results_dir: Path) -> None:
    """Rewrite the section of ``readme`` between the markers from ``document``."""
    text = readme.read_text()
    updated = replace_section(text, section(document, readme, results_dir), str(readme))
    if updated != text:
        readme.write_text(updated)


def _link(target: Path, readme: Path) -> str:
    """``target`` relative to the README's folder, with forward slashes (as Markdown wants)."""
    relative = os.path.relpath(target.resolve(), readme.resolve().parent)
    return Path(relative).as_posix()
