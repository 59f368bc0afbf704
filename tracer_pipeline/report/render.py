"""Render a report from `build.py` as one self-contained HTML page.

The page works offline and makes no request of any kind: the stylesheet, the table-sorting
script and the frontier plot (an SVG drawn here) are inline, and a Content-Security-Policy allows
no source but the page's own script, pinned by its hash. Every trace text, label and reason is
HTML-escaped by Jinja's autoescaping, so a trace that contains markup shows as text.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from markupsafe import Markup, escape

from tracer_pipeline.report.build import format_percent
from tracer_pipeline.report.template import REPORT_TEMPLATE, SORT_SCRIPT, STYLESHEET

# The frontier plot: α from 0.80 to 0.99 (widened if the frontier reaches further), coverage
# from 0 to 1, in an SVG of this size (pixels).
FRONTIER_ALPHA_RANGE = (0.80, 0.99)
FRONTIER_ALPHA_TICKS = (0.80, 0.85, 0.90, 0.95, 0.99)
PLOT_WIDTH = 640
PLOT_HEIGHT = 320
PLOT_MARGIN_LEFT = 64
PLOT_MARGIN_RIGHT = 20
PLOT_MARGIN_TOP = 16
PLOT_MARGIN_BOTTOM = 48


def render_report_html(report: Mapping) -> str:
    """Render a report as a self-contained HTML page.

    Args:
        report: a report from `build_report`.

    Returns:
        The HTML text, with the frontier plot (element id `frontier-plot`) and the sortable
        per-label table (element id `per-label-table`).
    """
    script_hash = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode("utf-8")).digest()).decode()
    content_security_policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    label_rows, previous_partition = _label_rows(report)
    n_deferred = sum(report["defer_reasons"].values())
    # The JSON twin is written with sorted keys: order the counts here, largest first.
    defer_reasons_by_label = [
        (row["label"], _by_count(report["defer_reasons_by_label"][row["label"]]))
        for row in report["per_label"]
        if row["label"] in report["defer_reasons_by_label"]
    ]

    headline = report["headline"]
    return _environment().from_string(REPORT_TEMPLATE).render(
        report=report,
        label_rows=label_rows,
        previous_partition=previous_partition,
        n_deferred=n_deferred,
        defer_reasons=_by_count(report["defer_reasons"]),
        defer_reasons_by_label=defer_reasons_by_label,
        reason_names=report["defer_reason_names"],
        frontier_svg=frontier_svg(
            report["frontier"], headline["alpha"], headline["coverage_holdout"]
        ),
        stylesheet=Markup(STYLESHEET),
        sort_script=Markup(SORT_SCRIPT),
        content_security_policy=content_security_policy,
    )


def frontier_svg(
    frontier: Sequence[Mapping[str, Any]],
    target_alpha: float | None,
    coverage_holdout: float | None = None,
) -> Markup:
    """Draw the coverage certified at each α as an inline SVG (element id `frontier-plot`).

    Args:
        frontier: points with `alpha`, `coverage_certified` and `refused`; refused points are
            drawn hollow at coverage 0.
        target_alpha: today's α, drawn as a dashed vertical line; None draws none.
        coverage_holdout: today's coverage on held-out traces, drawn as a diamond at
            `target_alpha`; None draws none.

    Returns:
        The SVG markup; every text in it is escaped.
    """
    alphas = [float(point["alpha"]) for point in frontier]
    low = min([FRONTIER_ALPHA_RANGE[0], *alphas])
    high = max([FRONTIER_ALPHA_RANGE[1], *alphas])
    left, right = PLOT_MARGIN_LEFT, PLOT_WIDTH - PLOT_MARGIN_RIGHT
    top, bottom = PLOT_MARGIN_TOP, PLOT_HEIGHT - PLOT_MARGIN_BOTTOM

    def x_of(alpha: float) -> float:
        return left + (alpha - low) / (high - low) * (right - left)

    def y_of(coverage: float) -> float:
        return bottom - coverage * (bottom - top)

    parts = [
        f'<svg id="frontier-plot" viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" width="100%" '
        f'style="max-width: {PLOT_WIDTH}px" role="img" '
        'aria-label="Coverage certified on calibration traces against target agreement α">'
    ]

    # Grid and axes: coverage every 25 %, α at the ticks.
    for coverage in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(coverage)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12">'
            f"{escape(format_percent(coverage, 0))}</text>"
        )
    for alpha in FRONTIER_ALPHA_TICKS:
        x = x_of(alpha)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 19}" text-anchor="middle" font-size="12">'
            f"{alpha:.2f}</text>"
        )
    parts.append(f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>')
    parts.append(
        f'<text x="{(left + right) / 2:.1f}" y="{PLOT_HEIGHT - 8}" text-anchor="middle" '
        'font-size="13">target agreement α</text>'
    )
    parts.append(
        f'<text x="16" y="{(top + bottom) / 2:.1f}" text-anchor="middle" font-size="13" '
        f'transform="rotate(-90 16 {(top + bottom) / 2:.1f})">coverage certified</text>'
    )

    if target_alpha is not None:
        x = x_of(float(target_alpha))
        parts.append(f'<line class="target" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')

    # The curve joins the points the gate certifies; refused points sit at coverage 0.
    points = sorted(frontier, key=lambda point: float(point["alpha"]))
    certified = [
        (x_of(float(point["alpha"])), y_of(float(point["coverage_certified"] or 0.0)))
        for point in points
        if not point.get("refused")
    ]
    if len(certified) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in certified)
        parts.append(f'<polyline class="curve" points="{path}"/>')
    for point in points:
        refused = bool(point.get("refused"))
        coverage = 0.0 if refused else float(point["coverage_certified"] or 0.0)
        alpha_text = f"α = {format_percent(point['alpha'], trim=True)}"
        title = (
            f"{alpha_text}: refused"
            if refused
            else f"{alpha_text}: coverage certified {format_percent(coverage)} (calibration traces)"
        )
        parts.append(
            f'<circle class="point{" refused" if refused else ""}" '
            f'cx="{x_of(float(point["alpha"])):.1f}" cy="{y_of(coverage):.1f}" r="4">'
            f"<title>{escape(title)}</title></circle>"
        )
    if target_alpha is not None and coverage_holdout is not None:
        x, y = x_of(float(target_alpha)), y_of(float(coverage_holdout))
        title = (
            f"α = {format_percent(target_alpha, trim=True)}: coverage "
            f"{format_percent(coverage_holdout)} on held-out traces"
        )
        parts.append(
            f'<path class="holdout-point" d="M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y:.1f} '
            f'L{x:.1f},{y + 6:.1f} L{x - 6:.1f},{y:.1f} Z"><title>{escape(title)}</title></path>'
        )
    if not points:
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{(top + bottom) / 2:.1f}" '
            'text-anchor="middle" font-size="14">no frontier was computed</text>'
        )

    parts.append("</svg>")
    return Markup("\n".join(parts))


def _label_rows(report: Mapping) -> tuple[list[dict[str, Any]], str | None]:
    """Per-label rows with their change in coverage since the previous day and main defer reason."""
    earlier = [day for day in report["history"] if day["partition"] < report["partition"]]
    previous = earlier[-1] if earlier else None
    rows = []
    for row in report["per_label"]:
        change = None
        if previous is not None and previous["per_label"].get(row["label"]) is not None:
            change = row["coverage"] - previous["per_label"][row["label"]]
        reasons = report["defer_reasons_by_label"].get(row["label"], {})
        main_reason = _by_count(reasons)[0][0] if reasons else None
        rows.append({**row, "coverage_change": change, "main_defer_reason": main_reason})
    return rows, previous["partition"] if previous else None


def _by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """(key, count) pairs, largest count first, ties by key."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = _percent_filter
    environment.filters["number"] = _number_filter
    environment.filters["points"] = _points_filter
    environment.filters["usd"] = _usd_filter
    environment.filters["count"] = _count_filter
    return environment


def _percent_filter(fraction: float | None, digits: int = 1, trim: bool = False) -> str:
    return format_percent(fraction, digits, trim=trim)


def _number_filter(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


def _points_filter(change: float) -> str:
    """A change of a fraction, in percentage points with its sign ("+3.1 pts")."""
    return f"{100.0 * change:+.1f} pts"


def _usd_filter(amount: float | None) -> str:
    """US dollars with cents, and with up to 4 decimals when they matter ("$0.002")."""
    if amount is None:
        return "—"
    text = f"{float(amount):,.4f}".rstrip("0")
    if len(text.partition(".")[2]) < 2:
        text = f"{float(amount):,.2f}"
    return f"${text}"


def _count_filter(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"
