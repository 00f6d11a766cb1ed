"""The report's charts as inline SVG (matplotlib, text drawn as paths: no fonts or network
needed to view them). Called by :mod:`monitor.accounting.render_html`.

* daily compliance (contract 002 chat first responses) against the target line;
* the first-response distribution with the 180 s and 300 s standards (2.2) marked;
* breaches by cause;
* the service-quality KPIs (004 3.3-3.5) per channel, each bar with its target marked.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("svg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from monitor.accounting.report import TenantReport
from monitor.kpi import KpiRow

# CJK glyphs for --lang zh come from Debian's fonts-noto-cjk when installed (the Makefile's
# tools target installs it); matplotlib falls back along this list per glyph.
_WANTED = ("DejaVu Sans", "Noto Sans CJK SC", "Noto Serif CJK SC")
_FONTS = [f for f in _WANTED if f in {e.name for e in font_manager.fontManager.ttflist}]
_BLUE, _RED, _GREY = "#2b6cb0", "#c53030", "#718096"


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue: inlined in HTML


def _figure() -> tuple[Figure, Axes]:
    plt.rcParams["font.family"] = _FONTS
    plt.rcParams["svg.fonttype"] = "path"
    plt.rcParams["svg.hashsalt"] = "sla-monitor"  # deterministic ids: same data, same bytes
    fig, ax = plt.subplots(figsize=(7.5, 2.8), dpi=96)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def daily_compliance(t: TenantReport, target: float, labels: dict[str, str]) -> str:
    fig, ax = _figure()
    days = [d.day[5:] for d in t.days]
    rates = [100 * (d.figures.compliance or 0.0) for d in t.days]
    ax.bar(days, rates, color=_BLUE, width=0.7)
    ax.axhline(
        100 * target,
        color=_RED,
        linestyle="--",
        linewidth=1.2,
        label=f"{labels['target_line']} {100 * target:.0f}%",
    )
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{labels['compliance']} (%)")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(labels["daily"], fontsize=10)
    return _svg(fig)


def distribution(samples: Sequence[tuple[float, float]], labels: dict[str, str]) -> str:
    fig, ax = _figure()
    values = [e for e, _ in samples]
    top = max([360.0, *values]) if values else 360.0
    bins = [i * top / 40 for i in range(41)]
    ax.hist(values, bins=bins, color=_BLUE)
    for threshold in (180, 300):
        ax.axvline(threshold, color=_RED, linestyle="--", linewidth=1.2)
        ax.text(
            threshold, ax.get_ylim()[1] * 0.95, f" {threshold} s", color=_RED, fontsize=8, va="top"
        )
    ax.set_xlabel(labels["seconds"])
    ax.set_ylabel(labels["sessions"])
    ax.set_title(labels["distribution"], fontsize=10)
    return _svg(fig)


def causes(counts: dict[str, int], labels: dict[str, str]) -> str:
    fig, ax = _figure()
    names = list(counts)
    ax.barh([labels[n] for n in names], [counts[n] for n in names], color=_RED)
    for y, n in enumerate(names):
        ax.text(counts[n], y, f" {counts[n]}", va="center", fontsize=8, color=_GREY)
    ax.invert_yaxis()
    ax.set_xlabel(labels["breached"])
    ax.set_title(labels["causes"], fontsize=10)
    return _svg(fig)


def kpis(rows: Sequence[KpiRow], labels: dict[str, str]) -> str:
    """Availability, FCR and the share of good ratings per channel (all shares, one 0-100 %
    axis; the 1-5 mean is in the table), the policy's target as a red tick on each bar."""
    fig, ax = _figure()
    series: list[tuple[str, list[float | None], list[float | None], str]] = [
        (
            "availability",
            [r.availability for r in rows],
            [r.targets.availability for r in rows],
            _BLUE,
        ),
        ("fcr", [r.fcr for r in rows], [r.targets.first_contact_resolution for r in rows], _GREY),
        (
            "csat_good",
            [r.csat_good_share for r in rows],
            [r.targets.csat_good_share for r in rows],
            "#38a169",
        ),
    ]
    width = 0.8 / len(series)
    ticked = False  # one legend entry for the targets
    for i, (label, values, targets, colour) in enumerate(series):
        xs = [n + (i - 1) * width for n in range(len(rows))]
        heights = [100 * (v or 0.0) for v in values]
        ax.bar(xs, heights, width, color=colour, label=labels[label])
        for x, goal in zip(xs, targets, strict=True):
            if goal is not None:
                ax.hlines(
                    100 * goal, x - width / 2, x + width / 2, color=_RED, linewidth=2,
                    label="_nolegend_" if ticked else labels["target_line"],
                )  # fmt: skip
                ticked = True
    ax.set_xticks(range(len(rows)), [r.channel or labels["no_channel"] for r in rows])
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside, not over, bars
    ax.set_title(labels["kpis"], fontsize=10)
    return _svg(fig)
