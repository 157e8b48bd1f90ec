"""Display helpers: one clock (the display zone, with its offset) and charts as inline SVG.

Charts are drawn on the server as SVG: nothing to download, no JavaScript, nothing a hospital
network without internet access could miss, and the page's figures and the bars come from the
same numbers. Every label is escaped (markupsafe, which Flask ships with).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from markupsafe import Markup, escape

from mi_worker.dashboard.data import to_utc
from mi_worker.states import ResultStatus

log = logging.getLogger("mi_worker.dashboard")
DEFAULT_ZONE = "Asia/Shanghai"
_CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
COLOURS = {ResultStatus.SUCCESS.value: "#2e7d32", ResultStatus.ERROR.value: "#c62828",
           ResultStatus.TIMEOUT.value: "#ef6c00", ResultStatus.UNCERTAIN.value: "#6a1b9a",
           ResultStatus.IN_PROGRESS.value: "#1565c0", "p50": "#1565c0", "p95": "#ef6c00"}


def display_zone(settings: Any) -> dt.tzinfo:
    """``display.timezone`` when the settings have it (default Asia/Shanghai).

    China has kept UTC+8 without daylight saving since 1991, so a missing tz database (a
    Windows host without the tzdata package) still shows the right time for the default.
    """
    name = getattr(getattr(settings, "display", None), "timezone", None) or DEFAULT_ZONE
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:
        if name != DEFAULT_ZONE:
            log.warning("display zone %s unknown here; showing Asia/Shanghai", name)
        return _CHINA


def fmt_time(value: Any, zone: dt.tzinfo) -> str:
    """'2024-05-01 10:00:00 +08:00': the display zone with an explicit offset."""
    when = to_utc(value)
    if when is None:
        return "" if value is None else str(value)
    local = when.astimezone(zone)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S ") + offset[:3] + ":" + offset[3:]


def fmt_ms(value: Any) -> str:
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):,.0f} ms"
    except (TypeError, ValueError):
        return str(value)


def stacked_bars(series: Dict[str, List[int]], labels: Sequence[str], title: str,
                 legend: Dict[str, str], width: int = 560, height: int = 180) -> Markup:
    """Stacked bars, one per bucket (oldest left): calls by outcome."""
    n = len(labels)
    totals = [sum(series[k][i] for k in series) for i in range(n)]
    peak = max(totals + [1])
    left, bottom, top = 36, 22, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    bar_w = plot_w / max(n, 1)
    parts: List[str] = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'data-points="{sum(1 for t in totals if t)}" data-total="{sum(totals)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="10">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>',
    ]
    for i in range(n):
        y = top + plot_h
        for key, values in series.items():
            v = values[i]
            if not v:
                continue
            h = plot_h * v / peak
            y -= h
            parts.append(
                f'<rect class="bar" x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" '
                f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" fill="{COLOURS.get(key, "#777")}">'
                f"<title>{escape(labels[i])} {escape(legend.get(key, key))}: {v}</title></rect>")
        if n <= 12 or i % max(n // 8, 1) == 0:
            parts.append(f'<text x="{left + i * bar_w + bar_w / 2:.1f}" y="{height - 6}" '
                         f'text-anchor="middle" font-size="10">{escape(labels[i])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts)) + _legend(legend, [k for k in series if any(series[k])])


def grouped_bars(rows: List[Dict[str, Any]], title: str, legend: Dict[str, str],
                 width: int = 560, height: int = 180) -> Markup:
    """p50 and p95 latency side by side per interface code."""
    keys: Tuple[str, str] = ("p50", "p95")
    values = [[_num(r.get(f"{k}_ms")) for k in keys] for r in rows]
    peak = max([v for pair in values for v in pair] + [1])
    left, bottom, top = 48, 22, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    n = max(len(rows), 1)
    group_w = plot_w / n
    points = sum(1 for pair in values for v in pair if v)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'data-points="{points}">', f"<title>{escape(title)}</title>",
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}" '
             'stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="10">'
             f"{peak:,.0f}</text>"]
    for i, (row, pair) in enumerate(zip(rows, values)):
        bw = min(group_w / 2 - 2, 40)
        x0 = left + i * group_w + (group_w - 2 * bw) / 2
        for j, (key, v) in enumerate(zip(keys, pair)):
            h = plot_h * v / peak
            parts.append(f'<rect class="bar" x="{x0 + j * bw:.1f}" y="{top + plot_h - h:.1f}" '
                         f'width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="{COLOURS[key]}">'
                         f"<title>{escape(row.get('interface_code'))} "
                         f"{escape(legend[key])}: {v:,.0f} ms</title></rect>")
        parts.append(f'<text x="{left + i * group_w + group_w / 2:.1f}" y="{height - 6}" '
                     f'text-anchor="middle" font-size="10">'
                     f"{escape(row.get('interface_code'))}</text>")
    parts.append("</svg>")
    return Markup("".join(parts)) + _legend(legend, list(keys))


def _legend(legend: Dict[str, str], keys: List[str]) -> Markup:
    items = "".join(f'<span class="key"><svg width="10" height="10"><rect width="10" '
                    f'height="10" fill="{COLOURS.get(k, "#777")}"/></svg> {escape(legend.get(k, k))}'
                    "</span>" for k in keys)
    return Markup(f'<div class="legend">{items}</div>')


def _num(value: Any) -> float:
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def bucket_labels(now: dt.datetime, buckets: int, bucket_seconds: int, zone: dt.tzinfo
                  ) -> List[str]:
    """Local clock label of each bucket's start, oldest first."""
    out = []
    for i in range(buckets):
        start = now - dt.timedelta(seconds=(buckets - i) * bucket_seconds)
        out.append(start.astimezone(zone).strftime("%H:%M"))
    return out


def json_safe(value: Optional[Any]) -> str:
    return "" if value is None else str(value)
