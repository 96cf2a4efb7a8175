"""Small inline SVG charts for the site: sparklines, F1-against-k lines, histograms.

Inline SVG keeps every page a single light file (no images to load, crisp at
any zoom) and needs no plotting library at build time. Each function returns
markup safe to insert unescaped; every label it writes is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["sparkline", "f1_vs_k_chart", "histogram_chart", "heat_colour", "PALETTE"]

#: Line colours of methods / classes, colour-blind safe (Okabe–Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Classes in histograms: positives green, negatives grey (orange and blue mean activation sign on tokens).
CLASS_COLOURS = ("#009E73", "#666666")


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def sparkline(points: Sequence[tuple[int, float]], *, width: int = 140, height: int = 32,
              y_range: tuple[float, float] = (0.0, 1.0), label: str = "F1") -> str:
    """A score against k as a tiny line (k on a log scale, the score over ``y_range``, values outside it drawn on
    its edge), with the k = 1 and last points marked.

    Give every sparkline of a page (of one metric) the same ``y_range`` so that they compare; ``label`` names
    the metric in the tooltip (``F1``, ``macro-F1``, ``R²``).
    """
    if not points:
        return ""
    xs = [math.log2(max(k, 1)) for k, _ in points]
    span = (max(xs) - min(xs)) or 1.0
    pad = 3

    def x(v: float) -> float:
        return pad + (v - min(xs)) / span * (width - 2 * pad)

    low, high = y_range
    extent = (high - low) or 1.0

    def y(f: float) -> float:
        return height - pad - max(0.0, min(1.0, (f - low) / extent)) * (height - 2 * pad)

    path = " ".join(f"{'M' if i == 0 else 'L'}{_fmt(x(a))},{_fmt(y(f))}"
                    for i, (a, (_, f)) in enumerate(zip(xs, points, strict=True)))
    title = escape(", ".join(f"k={k}: {f:.2f}" for k, f in points))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f"<title>{escape(label)} against k (log scale): {title}</title>"
            f'<line x1="{pad}" x2="{width - pad}" y1="{_fmt(y(1.0))}" y2="{_fmt(y(1.0))}" class="grid"/>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{_fmt(y((low + high) / 2))}" '
            f'y2="{_fmt(y((low + high) / 2))}" class="grid"/>'
            f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>'
            f'<circle cx="{_fmt(x(xs[0]))}" cy="{_fmt(y(points[0][1]))}" r="2" fill="{PALETTE[1]}"/>'
            f'<circle cx="{_fmt(x(xs[-1]))}" cy="{_fmt(y(points[-1][1]))}" r="2" fill="{PALETTE[0]}"/></svg>')


def f1_vs_k_chart(curves: dict[str, Sequence[tuple[int, float]]], *, width: int = 520, height: int = 260,
                  label: str = "F1", y_range: tuple[float, float] = (0.0, 1.0)) -> str:
    """A score against k (log scale) with one line per method; ``dense`` is drawn as a dashed level.

    ``label`` names the score (``F1``, ``macro-F1``, ``R²``); ``y_range`` is the axis (default 0–1). Values
    outside it are drawn on its edge, their own value in the point's tooltip.
    """
    sparse = {m: c for m, c in curves.items() if m != "dense" and c}
    if not sparse:
        return ""
    ks = sorted({k for c in sparse.values() for k, _ in c})
    left, right, top, bottom = 44, 120, 12, 36
    lo, hi = math.log2(ks[0]), math.log2(ks[-1])
    span = (hi - lo) or 1.0

    def x(k: float) -> float:
        return left + (math.log2(k) - lo) / span * (width - left - right)

    y_low, y_high = y_range
    y_span = (y_high - y_low) or 1.0

    def y(f: float) -> float:
        return top + (1 - max(0.0, min(1.0, (f - y_low) / y_span))) * (height - top - bottom)

    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f"<title>{escape(label)} against k</title>"]
    per_unit = 4 if y_span <= 1.25 else 2  # gridlines every 0.25, or every 0.5 on a long R² axis
    for f in (t / per_unit for t in range(math.ceil(y_low * per_unit), math.floor(y_high * per_unit) + 1)):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_fmt(y(f))}" y2="{_fmt(y(f))}" class="grid"/>'
                     f'<text x="{left - 6}" y="{_fmt(y(f) + 4)}" text-anchor="end">{f:.2f}</text>')
    shown = [k for i, k in enumerate(ks) if len(ks) <= 10 or i % 2 == 0 or k == ks[-1]]
    for k in shown:
        parts.append(f'<text x="{_fmt(x(k))}" y="{height - bottom + 14}" text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">'
                 "k (neurons, log scale)</text>")
    parts.append(f'<text transform="translate(12,{(top + height - bottom) / 2}) rotate(-90)" '
                 f'text-anchor="middle">test {escape(label)}</text>')
    legend_y = top + 6
    for i, (method, curve) in enumerate(sorted(sparse.items())):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{_fmt(x(k))},{_fmt(y(f))}" for j, (k, f) in enumerate(curve))
        parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for k, f in curve:
            parts.append(f'<circle cx="{_fmt(x(k))}" cy="{_fmt(y(f))}" r="2.5" fill="{colour}">'
                         f"<title>{escape(method)}, k={k}: {escape(label)} {f:.3f}</title></circle>")
        parts.append(f'<line x1="{width - right + 10}" x2="{width - right + 28}" y1="{legend_y}" y2="{legend_y}" '
                     f'stroke="{colour}" stroke-width="2"/><text x="{width - right + 32}" y="{legend_y + 4}">'
                     f"{escape(method)}</text>")
        legend_y += 16
    if curves.get("dense"):
        f = max(v for _, v in curves["dense"])
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_fmt(y(f))}" y2="{_fmt(y(f))}" stroke="#777" '
                     f'stroke-dasharray="5,4"><title>dense probe (all neurons): {escape(label)} {f:.3f}</title></line>'
                     f'<line x1="{width - right + 10}" x2="{width - right + 28}" y1="{legend_y}" y2="{legend_y}" '
                     f'stroke="#777" stroke-dasharray="5,4"/><text x="{width - right + 32}" y="{legend_y + 4}">'
                     "dense</text>")
    parts.append("</svg>")
    return "".join(parts)


def histogram_chart(edges: Sequence[float], counts: dict[str, Sequence[float]], *, width: int = 500,
                    height: int = 210, x_label: str = "activation", floor: float = 1e-3) -> str:
    """Overlaid step histograms, one per class, as the fraction of the class in each bin on a log axis (so that
    classes of different sizes compare, and a long tail next to a spike stays visible); ``edges`` has one more
    entry than each ``counts`` list. Fractions below ``floor`` are drawn at the floor."""
    if not counts or len(edges) < 2:
        return ""
    left, right, top, bottom = 48, 150, 10, 34
    lo, hi = float(edges[0]), float(edges[-1])
    span = (hi - lo) or 1.0
    fractions = {}
    for name, c in counts.items():
        total = float(sum(c)) or 1.0
        fractions[name] = [v / total for v in c]
    log_lo, log_hi = math.log10(floor), 0.0

    def x(v: float) -> float:
        return left + (v - lo) / span * (width - left - right)

    def y(fraction: float) -> float:
        t = (math.log10(max(fraction, floor)) - log_lo) / (log_hi - log_lo)
        return top + (1 - t) * (height - top - bottom)

    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f"<title>histogram of {escape(x_label)} by class</title>",
             f'<line x1="{left}" x2="{width - right}" y1="{_fmt(y(floor))}" y2="{_fmt(y(floor))}" class="axis"/>']
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{_fmt(x(v))}" y="{height - bottom + 14}" text-anchor="middle">{v:.2f}</text>')
    for power in range(int(log_lo), 1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_fmt(y(10.0**power))}" y2="{_fmt(y(10.0**power))}" '
                     f'class="grid"/><text x="{left - 4}" y="{_fmt(y(10.0**power) + 4)}" text-anchor="end">'
                     f"{10.0**power:g}</text>")
    if lo < 0 < hi:
        parts.append(f'<line x1="{_fmt(x(0))}" x2="{_fmt(x(0))}" y1="{top}" y2="{_fmt(y(floor))}" class="grid"/>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    parts.append(f'<text transform="translate(10,{(top + height - bottom) / 2}) rotate(-90)" '
                 'text-anchor="middle">fraction of class (log)</text>')
    legend_y = top + 8
    for i, (name, fraction) in enumerate(fractions.items()):
        colour = CLASS_COLOURS[i % len(CLASS_COLOURS)]
        d = [f"M{_fmt(x(edges[0]))},{_fmt(y(floor))}"]
        for j, value in enumerate(fraction):
            d.append(f"L{_fmt(x(edges[j]))},{_fmt(y(value))} L{_fmt(x(edges[j + 1]))},{_fmt(y(value))}")
        d.append(f"L{_fmt(x(edges[-1]))},{_fmt(y(floor))}")
        n = int(sum(counts[name]))
        parts.append(f'<path d="{" ".join(d)}" fill="{colour}" fill-opacity="0.15" stroke="{colour}" '
                     f'stroke-width="1.5"><title>{escape(name)} (n={n})</title></path>')
        parts.append(f'<rect x="{width - right + 10}" y="{legend_y - 6}" width="12" height="10" fill="{colour}" '
                     f'fill-opacity="0.6"/><text x="{width - right + 26}" y="{legend_y + 3}">{escape(name)} '
                     f"(n={n})</text>")
        legend_y += 16
    parts.append("</svg>")
    return "".join(parts)


def heat_colour(value: float | None, low: float = 0.5, high: float = 1.0) -> str:
    """Background colour of an F1 cell: white at ``low`` and below, deep blue at ``high``."""
    if value is None or math.isnan(value):
        return "#f3f3f3"
    t = max(0.0, min(1.0, (value - low) / ((high - low) or 1.0)))
    r, g, b = (int(255 + (c - 255) * t) for c in (8, 69, 148))
    return f"rgb({r},{g},{b})"

