"""Server-rendered SVG charts for the admin (no JavaScript, no CDN): a plugin's recent jobs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from .selectors import JobPoint

WIDTH, HEIGHT = 900, 230
LEFT, RIGHT, TOP = 64, 12, 14
PLOT_BOTTOM = 170  # the time axis; the failure lane sits below it
LANE_Y = 186
SUCCESS_COLOUR, FAILURE_COLOUR, AXIS_COLOUR = "#1e8e3e", "#d93025", "#9aa0a6"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= value (a readable axis maximum)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.001
    while True:
        for step in (1, 2, 2.5, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.4g} ms"


def chart_summary(points: Sequence[JobPoint]) -> str:
    """One line above the chart: counts, and median / slowest execution time."""
    failed = sum(p.status == "FAILED" for p in points)
    times = [p.execution_time_ms for p in points if p.execution_time_ms is not None]
    text = f"Last {len(points)} finished job(s): {len(points) - failed} succeeded, {failed} failed"
    if times:
        text += f"; median {_ms(statistics.median(times))}, slowest {_ms(max(times))}"
    return text


def activity_svg(points: Sequence[JobPoint]) -> SafeString:
    """Return an inline SVG: one bar per finished job (height = execution time, green success,
    red failure) and a marker lane below the axis for every failure, each linked to its job and
    titled with time, status, error type and duration (hover tooltips without JavaScript)."""
    if not points:
        return format_html('<p class="warden-muted">{}</p>', "No finished jobs yet.")
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = PLOT_BOTTOM - TOP
    slot = plot_w / max(len(points), 20)
    bar_w = max(slot * 0.7, 1.0)
    top = _nice_ceiling(max((p.execution_time_ms or 0.0) for p in points))
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(chart_summary(points))}" class="warden-activity">'
    ]
    for fraction in (0, 0.5, 1):
        y = PLOT_BOTTOM - fraction * plot_h
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{AXIS_COLOUR}" stroke-width="{1 if fraction == 0 else 0.5}" '
            f'stroke-dasharray="{"" if fraction == 0 else "3 3"}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="currentColor">{escape(_ms(top * fraction))}</text>'
        )
    parts.append(
        f'<text x="{LEFT - 6}" y="{LANE_Y + 4}" text-anchor="end" font-size="11" '
        f'fill="{FAILURE_COLOUR}">failures</text>'
    )
    for i, point in enumerate(points):
        x = LEFT + i * slot + (slot - bar_w) / 2
        colour = SUCCESS_COLOUR if point.status == "SUCCESS" else FAILURE_COLOUR
        duration = point.execution_time_ms
        title = (
            f"{point.created_at:%Y-%m-%d %H:%M:%S} UTC · {point.status}"
            f"{' ' + point.error_type if point.error_type else ''} · "
            f"{_ms(duration) if duration is not None else 'no measured time'}"
        )
        url = reverse("admin:execution_app_job_change", args=[point.job_id])
        shapes = ""
        if duration is not None:
            height = max(duration / top * plot_h, 1.5)
            shapes += (
                f'<rect class="bar bar-{point.status.lower()}" x="{x:.1f}" '
                f'y="{PLOT_BOTTOM - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
                f'fill="{colour}"/>'
            )
        if point.status == "FAILED":
            cx = x + bar_w / 2
            shapes += (
                f'<path class="failure" d="M{cx - 5:.1f},{LANE_Y + 5} L{cx:.1f},{LANE_Y - 5} '
                f'L{cx + 5:.1f},{LANE_Y + 5} Z" fill="{FAILURE_COLOUR}"/>'
            )
        parts.append(f'<a href="{escape(url)}"><title>{escape(title)}</title>{shapes}</a>')
    first, last = points[0].created_at, points[-1].created_at
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="11" fill="currentColor">'
        f"{escape(f'{first:%Y-%m-%d %H:%M:%S}')}</text>"
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" font-size="11" text-anchor="end" '
        f'fill="currentColor">{escape(f"{last:%Y-%m-%d %H:%M:%S} UTC (newest)")}</text>'
        f'<g font-size="11" fill="currentColor">'
        f'<rect x="{WIDTH / 2 - 150:.0f}" y="{HEIGHT - 16}" width="10" height="10" '
        f'fill="{SUCCESS_COLOUR}"/><text x="{WIDTH / 2 - 136:.0f}" y="{HEIGHT - 7}">success'
        f'</text><rect x="{WIDTH / 2 - 70:.0f}" y="{HEIGHT - 16}" width="10" height="10" '
        f'fill="{FAILURE_COLOUR}"/><text x="{WIDTH / 2 - 56:.0f}" y="{HEIGHT - 7}">failure '
        f"(bar: measured time; triangle: every failure)</text></g>"
    )
    parts.append("</svg>")
    # Every interpolated text above went through escape(); numbers are formatted floats.
    return mark_safe("".join(parts))  # noqa: S308
