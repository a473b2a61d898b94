"""Charts as inline SVG rendered on the server: no script, no CDN, readable in any browser and in a screenshot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

# Colour-blind-safe palette (Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
OUTCOME_COLORS = {"ok": "#009E73", "TemporaryError": "#E69F00", "PermanentError": "#D55E00",
                  "ConfigurationError": "#CC79A7", "error": "#000000"}


def _nice_max(value: float) -> float:
    """A round axis maximum above `value` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float, unit: str) -> str:
    text = f"{value:,.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return f"{text}{(' ' + unit) if unit else ''}"


def stacked_bars(chart_id: str, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *,
                 unit: str = "", colors: Mapping[str, str] | None = None, width: int = 640,
                 height: int = 220) -> str:
    """One bar per label (a day), stacked by series (outcome, category, connection), with a legend and a
    tooltip per segment. Empty data says so."""
    left, right, top, bottom = 56, 12, 28, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    full_height = height + 18 * ((len(series) + 3) // 4)  # room for the legend rows
    out = [f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {full_height}" '
           f'width="{width}" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    if not labels or not any(totals):
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" class="chart-empty">'
                   "no data in this period</text></svg>")
        return "".join(out)
    top_value = _nice_max(max(totals))
    for i in range(5):  # grid lines and y labels
        v = top_value * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{escape(_fmt(v, ""))}</text>')
    slot = plot_w / len(labels)
    bar = min(36.0, slot * 0.7)
    palette = dict(colors or {})
    names = list(series)
    for n, name in enumerate(names):
        palette.setdefault(name, PALETTE[n % len(PALETTE)])
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h
        for name in names:
            v = series[name][i]
            if not v:
                continue
            h = plot_h * v / top_value
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{palette[name]}" '
                       f'data-series="{escape(name)}" data-label="{escape(label)}" data-value="{v:g}">'
                       f"<title>{escape(label)} · {escape(name)}: {escape(_fmt(v, unit))}</title></rect>")
        if len(labels) <= 16 or i % math.ceil(len(labels) / 16) == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" class="axis">'
                       f"{escape(label[5:] if len(label) == 10 else label)}</text>")
    for n, name in enumerate(names):  # legend, four per row
        lx = left + (n % 4) * (plot_w / 4)
        ly = top + plot_h + 32 + 18 * (n // 4)
        total = sum(series[name])
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{palette[name]}"/>'
                   f'<text x="{lx + 14:.1f}" y="{ly}" class="legend">{escape(name)} ({escape(_fmt(total, unit))})'
                   "</text>")
    out.append("</svg>")
    return "".join(out)


def horizontal_bars(chart_id: str, title: str, items: Sequence[tuple[str, float]], *, unit: str = "",
                    width: int = 640) -> str:
    """One bar per item (a connection), longest first."""
    items = sorted(((k, v) for k, v in items if v), key=lambda kv: -kv[1])[:12]
    row, left, top = 22, 200, 28
    height = top + row * max(1, len(items)) + 8
    out = [f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="8" y="16" class="chart-title">{escape(title)}</text>']
    if not items:
        out.append(f'<text x="{width / 2}" y="{top + 12}" text-anchor="middle" class="chart-empty">'
                   "no data in this period</text></svg>")
        return "".join(out)
    top_value = max(v for _, v in items)
    for i, (label, v) in enumerate(items):
        y = top + row * i
        w = (width - left - 90) * v / top_value
        out.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="axis">{escape(label[:28])}</text>'
                   f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{PALETTE[0]}" '
                   f'data-label="{escape(label)}" data-value="{v:g}"><title>{escape(label)}: '
                   f"{escape(_fmt(v, unit))}</title></rect>"
                   f'<text x="{left + w + 6:.1f}" y="{y + 14}" class="axis">{escape(_fmt(v, unit))}</text>')
    out.append("</svg>")
    return "".join(out)
