"""PNG charts of a results document (matplotlib, Agg backend: no display needed).

``ratios.png`` is the headline: one horizontal bar per ours-vs-peer (and
ours-vs-bound) ratio, on a log scale so that 2x faster and 2x slower are the
same length, with a line at 1.0 and a tick at each goal. ``<benchmark>.png``
shows the spread of every contender's samples, to judge how noisy a figure is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ._core import PEER_ROLES
from ._report import Document, ratio_rows
from ._units import display_unit, format_ratio

MET, MISSED, WIN, LOSS = "#2e7d32", "#c62828", "#1565c0", "#ef6c00"


def _matplotlib() -> Any:
    """matplotlib on the Agg backend, with the submodules used here imported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot
    import matplotlib.ticker

    return matplotlib


def ratio_chart(document: Document, path: Path) -> Path:
    """Bar chart of every ratio against a peer or a bound; written even when there is none."""
    plt = _matplotlib().pyplot
    rows = [row for row in ratio_rows(document, PEER_ROLES) if row["ratio"] is not None]
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.42 * max(1, len(rows))))
    try:
        title = "edge-actors vs peers: ratio > 1 means ours is better (log scale)"
        if document["quick"]:
            title += "\nquick smoke run: figures not representative"
        ax.set_title(title, fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no peer comparisons in this run", ha="center", va="center")
            ax.set_axis_off()
        else:
            _draw_ratios(ax, rows)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def _draw_ratios(ax: Any, rows: list[dict[str, Any]]) -> None:
    labels, colors = [], []
    for row in rows:
        labels.append(
            f"{row['benchmark']} · {row['case']} · {row['metric']}\n{row['ours']} vs {row['peer']}"
        )
        if row["met"] is not None:
            colors.append(MET if row["met"] else MISSED)
        else:
            colors.append(WIN if row["ratio"] >= 1 else LOSS)
    positions = range(len(rows))
    ratios = [row["ratio"] for row in rows]
    # Bars grow from 1.0: rightwards where ours wins, leftwards where it loses.
    ax.barh(positions, [r - 1.0 for r in ratios], left=1.0, color=colors, height=0.6)
    ax.set_xscale("log")
    ticker = _matplotlib().ticker
    values = ratios + [r["goal"]["threshold"] for r in rows if r["goal"]] + [1.0]
    low, high = min(values) / 2, max(values) * 3
    # 1-2-5 ticks over a couple of decades; one tick per decade beyond, or the labels collide.
    subs = (1.0, 2.0, 5.0) if math.log10(high / low) <= 2.5 else (1.0,)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _pos: format_ratio(value)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.invert_yaxis()
    ax.set_yticks(list(positions), labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    for y, row in enumerate(rows):
        wins = row["ratio"] >= 1
        ax.annotate(
            format_ratio(row["ratio"]),
            (row["ratio"], y),
            xytext=(3 if wins else -3, 0),
            textcoords="offset points",
            ha="left" if wins else "right",
            va="center",
            fontsize=7,
        )
        if row["goal"] is not None:
            goal = row["goal"]["threshold"]
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linestyle="--", linewidth=1)
    ax.set_xlim(low, high)
    ax.set_xlabel(
        "ratio (peer ÷ ours for times and sizes, ours ÷ peer for throughputs); dashed: goal",
        fontsize=8,
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_axisbelow(True)
    patches = _matplotlib().patches
    legend = {
        "goal met": MET,
        "goal missed": MISSED,
        "no goal, ours better": WIN,
        "no goal, ours worse": LOSS,
    }
    ax.legend(
        handles=[patches.Patch(color=color, label=label) for label, color in legend.items()],
        loc="lower right",
        fontsize=7,
    )


def sample_chart(bench: dict[str, Any], path: Path) -> Path:
    """Box plots of every contender's samples, one panel per case and metric."""
    plt = _matplotlib().pyplot
    panels = [(case, metric) for case in bench["cases"] for metric in case["metrics"]]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9, 0.9 + 1.6 * len(panels) + 0.25 * _most_contenders(bench)),
        squeeze=False,
    )
    try:
        for ax, (case, metric) in zip(axes[:, 0], panels, strict=True):
            contenders = case["contenders"]
            medians = [c["stats"][metric["name"]]["median"] for c in contenders]
            factor, unit = display_unit(max(medians), metric["unit"])
            data = [[v / factor for v in c["samples"][metric["name"]]] for c in contenders]
            ax.boxplot(data, vert=False, widths=0.6)
            ax.set_yticks(
                range(1, len(contenders) + 1), [c["name"] for c in contenders], fontsize=8
            )
            ax.invert_yaxis()
            better = "higher" if metric["better"] == "higher" else "lower"
            ax.set_title(f"{case['name']} · {metric['label']} ({better} is better)", fontsize=9)
            ax.set_xlabel(unit, fontsize=8)
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle(f"{bench['name']}: samples per contender", fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _most_contenders(bench: dict[str, Any]) -> int:
    return max((len(case["contenders"]) for case in bench["cases"]), default=1)


def write_charts(document: Document, directory: Path) -> list[Path]:
    """``ratios.png`` plus one ``<benchmark>.png`` per benchmark that ran."""
    ran = [b for b in document["benchmarks"].values() if b["status"] == "ok" and b["cases"]]
    return [
        ratio_chart(document, directory / "ratios.png"),
        *(sample_chart(bench, directory / f"{bench['name']}.png") for bench in ran),
    ]
