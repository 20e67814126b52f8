"""The results document (JSON) and its Markdown rendering.

The JSON document is the single source of truth: the Markdown file, the
charts and the README section are all rendered from it, so a past run's
``results.json`` can be re-rendered without re-measuring.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._core import CaseResult, Goal, Stats
from ._run import BenchOutcome
from ._units import format_ratio, format_value

SCHEMA = "edge-actors-bench/1"
RATIO_RULE = (
    "ratio = how many times better ours is (> 1: ours wins): peer median / ours median "
    "for times and sizes (lower is better), ours median / peer median for throughputs and "
    "bandwidths (higher is better)"
)

Document = dict[str, Any]


def build_document(
    outcomes: Sequence[BenchOutcome],
    machine: dict[str, Any],
    *,
    quick: bool,
    argv: Sequence[str],
    created: dt.datetime,
) -> Document:
    """Everything measured in one run, JSON-ready: machine, every sample, stats and ratios."""
    return {
        "schema": SCHEMA,
        "created": created.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "argv": list(argv),
        "ratio_rule": RATIO_RULE,
        "machine": machine,
        "benchmarks": {o.name: _outcome(o) for o in outcomes},
    }


def write_json(document: Document, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")


def read_json(path: Path) -> Document:
    document: Document = json.loads(path.read_text())
    if document.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an {SCHEMA} results file")
    return document


def _goal(goal: Goal | None) -> dict[str, Any] | None:
    if goal is None:
        return None
    return {"text": goal.text, "threshold": goal.threshold, "at_least": goal.at_least}


def _outcome(outcome: BenchOutcome) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "description": outcome.description,
        "goals": [_goal(g) for g in outcome.goals],
        "status": outcome.status,
        "reason": outcome.reason,
        "seconds": round(outcome.seconds, 3),
        "cases": [_case(c) for c in outcome.cases],
    }


def _stats(stats: Stats) -> dict[str, float]:
    return {"min": stats.min, "median": stats.median, "max": stats.max, "n": stats.n}


def _case(case: CaseResult) -> dict[str, Any]:
    return {
        "name": case.name,
        "params": dict(case.params),
        "notes": list(case.notes),
        "samples": case.samples,
        "warmup": case.warmup,
        "budget_seconds": case.budget,
        "metrics": [
            {"name": m.name, "unit": m.unit, "better": m.better, "label": m.title}
            for m in case.metrics
        ],
        "contenders": [
            {
                "name": c.name,
                "role": c.role,
                "label": c.label,
                "samples": {k: list(v) for k, v in c.samples.items()},
                "stats": {m.name: _stats(c.stats(m.name)) for m in case.metrics},
            }
            for c in case.contenders
        ],
        "ratios": [
            {
                "ours": r.ours,
                "peer": r.peer,
                "peer_role": r.peer_role,
                "metric": r.metric,
                "ratio": r.ratio,
                "goal": _goal(r.goal),
                "met": r.met,
            }
            for r in case.ratios
        ],
        "limits": [
            {
                "contender": lim.contender,
                "metric": lim.metric,
                "median": lim.median,
                "goal": _goal(lim.goal),
                "met": lim.met,
            }
            for lim in case.limits
        ],
    }


# --- Markdown -------------------------------------------------------------------------------


def summary_line(document: Document) -> str:
    """One line saying when, how and on what the figures were taken."""
    m = document["machine"]
    memory = format_value(m["memory_bytes"], "B") if m.get("memory_bytes") else "? memory"
    python = m["python"].split()[0]
    kind = "**quick smoke run: figures not representative**" if document["quick"] else "full run"
    uvloop = m["packages"].get("uvloop") or "not available"
    git = f" · git {m['git']}" if m.get("git") else ""
    return (
        f"{document['created']} · {kind} · {m['cpu_model']} ({m['cpu_count']} cores) · "
        f"{memory} · Python {python} · {m['platform']} · uvloop {uvloop}{git}"
    )


def ratio_rows(document: Document, roles: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every ratio with its benchmark, case and metric, optionally only against ``roles``."""
    wanted = None if roles is None else set(roles)
    for bench in document["benchmarks"].values():
        for case in bench["cases"]:
            metrics = {m["name"]: m for m in case["metrics"]}
            for ratio in case["ratios"]:
                if wanted is None or ratio["peer_role"] in wanted:
                    yield {
                        **ratio,
                        "benchmark": bench["name"],
                        "case": case["name"],
                        "metric_info": metrics[ratio["metric"]],
                    }


def ratio_table(document: Document, roles: Iterable[str] | None = None) -> str:
    """Markdown table of the ratios, ours vs each peer, baseline and bound (or only ``roles``)."""
    lines = [
        "| benchmark | case | metric | ours | vs | ratio (> 1: ours better) | computed as "
        "| goal | met |",
        "|---|---|---|---|---|---:|---|---|:-:|",
    ]
    for row in ratio_rows(document, roles):
        goal = row["goal"]
        lower = row["metric_info"]["better"] == "lower"
        lines.append(
            _row(
                row["benchmark"],
                row["case"],
                row["metric_info"]["label"],
                row["ours"],
                f"{row['peer']} ({row['peer_role']})",
                "n/a" if row["ratio"] is None else format_ratio(row["ratio"]),
                "peer ÷ ours" if lower else "ours ÷ peer",
                _goal_text(goal, None) if goal else "",
                _met(row["met"]),
            )
        )
    return "\n".join(lines) if len(lines) > 2 else "_No comparisons in this run._"


def limit_table(document: Document) -> str:
    """Markdown table of the absolute goals (e.g. restart latency), or '' when there are none."""
    lines = [
        "| benchmark | case | contender | metric | median | goal | met |",
        "|---|---|---|---|---:|---|:-:|",
    ]
    for bench in document["benchmarks"].values():
        for case in bench["cases"]:
            metrics = {m["name"]: m for m in case["metrics"]}
            for lim in case["limits"]:
                unit = metrics[lim["metric"]]["unit"]
                lines.append(
                    _row(
                        bench["name"],
                        case["name"],
                        lim["contender"],
                        metrics[lim["metric"]]["label"],
                        format_value(lim["median"], unit),
                        _goal_text(lim["goal"], unit),
                        _met(lim["met"]),
                    )
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def figure_table(document: Document) -> str:
    """Markdown table of min/median/max per contender and metric."""
    lines = [
        "| benchmark | case | contender | role | metric | min | median | max | n |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for bench in document["benchmarks"].values():
        for case in bench["cases"]:
            for contender in case["contenders"]:
                for metric in case["metrics"]:
                    stats = contender["stats"][metric["name"]]
                    unit = metric["unit"]
                    lines.append(
                        _row(
                            bench["name"],
                            case["name"],
                            contender["name"],
                            contender["role"],
                            f"{metric['label']} ({metric['better']} is better)",
                            format_value(stats["min"], unit),
                            format_value(stats["median"], unit),
                            format_value(stats["max"], unit),
                            str(stats["n"]),
                        )
                    )
    return "\n".join(lines)


def not_run(document: Document) -> str:
    """Bullet list of skipped and failed benchmarks with the reason, or '' when all ran."""
    items = []
    for bench in document["benchmarks"].values():
        if bench["status"] != "ok":
            reason = (bench["reason"] or "").strip().splitlines() or [""]
            items.append(f"- **{bench['name']}**: {bench['status']}: {reason[-1]}")
    return "\n".join(items)


def markdown(document: Document) -> str:
    """The whole ``results.md``: run line, ratios, absolute goals, figures, what did not run."""
    parts = [
        "# edge-actors benchmarks",
        summary_line(document),
        f"> {RATIO_RULE[0].upper()}{RATIO_RULE[1:]}.",
        "## Ours vs peers",
        ratio_table(document),
    ]
    limits = limit_table(document)
    if limits:
        parts += ["## Absolute goals", limits]
    parts += ["## Figures (min / median / max of the samples)", figure_table(document)]
    missing = not_run(document)
    if missing:
        parts += ["## Not run", missing]
    parts += ["## Benchmarks", _descriptions(document)]
    return "\n\n".join(parts) + "\n"


def _descriptions(document: Document) -> str:
    return "\n".join(
        f"- **{b['name']}**: {b['description']}" for b in document["benchmarks"].values()
    )


def _goal_text(goal: dict[str, Any], unit: str | None) -> str:
    sign = "≥" if goal["at_least"] else "≤"
    value = (
        format_ratio(goal["threshold"]) if unit is None else format_value(goal["threshold"], unit)
    )
    return f"{sign} {value}"


def _met(met: bool | None) -> str:
    return {True: "✅", False: "❌", None: ""}[met]


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
