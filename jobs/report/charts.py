"""Small SVG charts, written as text: the HTML report embeds them inline, so it opens anywhere
without a network or a script. Every mark carries a <title>, which browsers show on hover."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

WIDTH = 640
FONT = "font-family='system-ui, sans-serif' font-size='12'"
AXIS = "#888"
GRID = "#e5e5e5"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _svg(height: int, body: list[str], label: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {height}' "
        f"width='{WIDTH}' height='{height}' role='img' aria-label='{escape(label)}' {FONT}>"
        + "".join(body)
        + "</svg>"
    )


def hbars(
    items: Sequence[tuple[str, float, str, str]],
    label: str,
    fmt: Callable[[float, float], str] = lambda v, step: f"{v:,.0f}",
) -> str:
    """Horizontal bars: (name, value, text shown at the bar's end, colour) per item.
    `fmt(tick, step)` labels the axis."""
    if not items:
        return _empty(label)
    name_w = min(220, 14 + 7 * max(len(n) for n, *_ in items))
    shown_w = 12 + 6.5 * max(len(shown) for _, _, shown, _ in items)
    plot_w = WIDTH - name_w - max(shown_w, 40)
    ticks = nice_ticks(max(v for _, v, *_ in items))
    top = ticks[-1]
    row_h, pad = 24, 8
    height = pad * 2 + row_h * len(items) + 22
    body = []
    for t in ticks:
        x = name_w + plot_w * t / top
        body.append(
            f"<line x1='{x:.1f}' y1='{pad}' x2='{x:.1f}' y2='{height - 22}' stroke='{GRID}'/>"
        )
        body.append(
            f"<text x='{x:.1f}' y='{height - 6}' text-anchor='middle' fill='{AXIS}'>"
            f"{escape(fmt(t, ticks[1] - ticks[0]))}</text>"
        )
    for i, (name, value, shown, colour) in enumerate(items):
        y = pad + i * row_h
        w = plot_w * value / top
        body.append(
            f"<text x='{name_w - 8}' y='{y + 16}' text-anchor='end'>{escape(_cut(name, 30))}</text>"
            f"<rect x='{name_w}' y='{y + 4}' width='{max(w, 0.5):.1f}' height='{row_h - 8}' "
            f"fill='{colour}'><title>{escape(name)}: {escape(shown)}</title></rect>"
            f"<text x='{name_w + w + 6:.1f}' y='{y + 16}'>{escape(shown)}</text>"
        )
    return _svg(height, body, label)


def histogram(
    values: Sequence[float],
    label: str,
    unit: str,
    markers: dict[str, float] | None = None,
    bins: int = 30,
    colour: str = "#4e79a7",
) -> str:
    """Counts of values in equal bins from 0, with labelled vertical markers (p50, p95)."""
    if not len(values):
        return _empty(label)
    ticks = nice_ticks(max(values))
    hi = ticks[-1]
    step = hi / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v / step), bins - 1)] += 1
    return _columns(
        [[c] for c in counts],
        [colour],
        ["rows"],
        label,
        hover=[f"{i * step:,.4g}–{(i + 1) * step:,.4g} {unit}" for i in range(bins)],
        y_name="rows",
        x_ticks=[(t / hi, _num(t)) for t in ticks],
        x_name=unit,
        markers={k: v / hi for k, v in (markers or {}).items()},
    )


def stacked_columns(
    rows: Sequence[Sequence[float]],
    colours: Sequence[str],
    series: Sequence[str],
    label: str,
    hover: Sequence[str],
    y_name: str,
) -> str:
    """One column per row, stacked by series (e.g. tokens by kind per worksheet row)."""
    if not rows:
        return _empty(label)
    n = len(rows)
    ends = [((0.5) / n, "1"), ((n - 0.5) / n, f"{n:,}")] if n > 1 else [(0.5, "1")]
    return _columns(
        rows, colours, series, label, hover=hover, y_name=y_name, x_ticks=ends, x_name="row"
    )


def _columns(
    rows: Sequence[Sequence[float]],
    colours: Sequence[str],
    series: Sequence[str],
    label: str,
    hover: Sequence[str],
    y_name: str,
    x_ticks: Sequence[tuple[float, str]],
    x_name: str,
    markers: dict[str, float] | None = None,
) -> str:
    left, right, top_pad, bottom = 64, 16, 28, 40
    height = 260
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    ticks = nice_ticks(max(sum(r) for r in rows))
    top = ticks[-1]
    body = []
    for t in ticks:
        y = top_pad + plot_h * (1 - t / top)
        body.append(
            f"<line x1='{left}' y1='{y:.1f}' x2='{WIDTH - right}' y2='{y:.1f}' stroke='{GRID}'/>"
        )
        body.append(
            f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end' fill='{AXIS}'>{t:,.0f}</text>"
        )
    slot = plot_w / len(rows)
    gap = 1 if slot > 3 else 0
    for i, parts in enumerate(rows):
        x = left + i * slot
        y = top_pad + plot_h
        tip = escape(
            f"{hover[i]}: " + ", ".join(f"{v:,.0f} {s}" for s, v in zip(series, parts, strict=True))
        )
        for value, colour in zip(parts, colours, strict=True):
            h = plot_h * value / top
            if h <= 0:
                continue
            y -= h
            body.append(
                f"<rect x='{x:.2f}' y='{y:.2f}' width='{max(slot - gap, 0.6):.2f}' "
                f"height='{h:.2f}' fill='{colour}'><title>{tip}</title></rect>"
            )
    for i, (name, frac) in enumerate((markers or {}).items()):
        x = left + plot_w * frac
        # Labels step down so that markers at the same place stay readable.
        y = top_pad - 10 + 12 * i
        anchor = "end" if frac > 0.85 else "start"
        dx = -3 if anchor == "end" else 3
        body.append(
            f"<line x1='{x:.1f}' y1='{top_pad - 6}' x2='{x:.1f}' y2='{top_pad + plot_h}' "
            f"stroke='#e15759' stroke-dasharray='4 3'/>"
            f"<text x='{x + dx:.1f}' y='{y}' text-anchor='{anchor}' fill='#e15759'>"
            f"{escape(name)}</text>"
        )
    base = top_pad + plot_h
    body.append(f"<line x1='{left}' y1='{base}' x2='{WIDTH - right}' y2='{base}' stroke='{AXIS}'/>")
    for frac, text in x_ticks:
        x = left + plot_w * frac
        body.append(
            f"<line x1='{x:.1f}' y1='{base}' x2='{x:.1f}' y2='{base + 4}' stroke='{AXIS}'/>"
            f"<text x='{x:.1f}' y='{base + 16}' text-anchor='middle' fill='{AXIS}'>"
            f"{escape(text)}</text>"
        )
    body.append(
        f"<text x='{left + plot_w / 2:.0f}' y='{base + 32}' text-anchor='middle' "
        f"fill='{AXIS}'>{escape(x_name)}</text>"
    )
    body.append(
        f"<text x='14' y='{top_pad + plot_h / 2:.0f}' fill='{AXIS}' text-anchor='middle' "
        f"transform='rotate(-90 14 {top_pad + plot_h / 2:.0f})'>{escape(y_name)}</text>"
    )
    if len(series) > 1:
        x = left
        for name, colour in zip(series, colours, strict=True):
            body.append(f"<rect x='{x}' y='6' width='10' height='10' fill='{colour}'/>")
            body.append(f"<text x='{x + 14}' y='15'>{escape(name)}</text>")
            x += 24 + 7 * len(name)
    return _svg(height, body, label)


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() or v >= 100 else f"{v:,.2f}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _empty(label: str) -> str:
    return _svg(40, [f"<text x='8' y='24' fill='{AXIS}'>nothing to show</text>"], label)
