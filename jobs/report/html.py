"""The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched)
with the summary of each answers CSV as charts and tables."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from datetime import datetime
from html import escape
from pathlib import Path

from jobs.report import charts, graded
from jobs.report.summary import Answers, Summary, rows, usd
from worker.errors import InputError

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
STATUS_COLOURS = {
    "completed": "#59a14f",
    "failed": "#e15759",
    "incomplete": "#f28e2b",
    "expired": "#b07aa1",
    "cancelled": "#9c755f",
    "skipped": "#bab0ac",
    "pending": "#d3d3d3",
}
TOKEN_SERIES = (
    ("prompt", "#4e79a7"),
    ("cached prompt", "#a0cbe8"),
    ("completion", "#f28e2b"),
    ("reasoning", "#ffbe7d"),
)
PER_ROW_MAX = 300  # beyond this many rows, tokens per row is shown as a histogram

CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1360px;color:#222;padding:0 16px}
h1{margin:0 0 4px}h2{margin:32px 0 8px;border-bottom:2px solid #eee;padding-bottom:4px}
.sub{color:#666;margin:0 0 16px}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#f6f7f9;border-radius:8px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(660px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #eee;border-radius:8px;padding:10px}
figcaption{font-weight:600;margin-bottom:6px}svg{max-width:100%;height:auto}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff8e1;border-left:4px solid #f2b600;padding:6px 10px;margin:6px 0}
.unpriced{color:#b35c00;font-weight:600}
"""


def page(parts: list[tuple[Answers, Summary]], total: Summary | None = None) -> str:
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>askbatch report: {escape(', '.join(s.name for _, s in parts))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>askbatch report</h1>",
        f"<p class='sub'>{len(parts)} answers file{'s' if len(parts) != 1 else ''}, "
        f"made {datetime.now():%Y-%m-%d %H:%M}</p>",
    ]
    if total is not None:
        out.append(_overview(parts, total))
    for answers, summary in parts:
        out.append(_section(answers, summary))
    out.append("</body></html>")
    return "\n".join(out)


def _overview(parts: list[tuple[Answers, Summary]], total: Summary) -> str:
    body = "".join(
        f"<tr><td>{escape(s.name)}</td><td class='n'>{s.rows:,}</td>"
        f"<td class='n'>{s.by_status.get('completed', 0):,}</td>"
        f"<td class='n'>{s.tokens['total_tokens']:,}</td><td class='n'>{_cost(s)}</td></tr>"
        for _, s in parts
    )
    bars = [
        (s.name, float(s.cost), _cost_text(s), PALETTE[i % len(PALETTE)])
        for i, (_, s) in enumerate(parts)
    ]
    return (
        f"<section><h2>All {len(parts)} files</h2>{_cards(total)}"
        "<div class='grid'><figure><figcaption>Cost by file</figcaption>"
        f"{charts.hbars(bars, 'cost by file', _axis_usd)}</figure>"
        "<figure><figcaption>Cost by model, all files</figcaption>"
        f"{_cost_by_model(total)}</figure></div>"
        "<table><tr><th>file</th><th class='n'>rows</th><th class='n'>completed</th>"
        f"<th class='n'>tokens</th><th class='n'>cost</th></tr>{body}"
        f"<tr><th>total</th><th class='n'>{total.rows:,}</th>"
        f"<th class='n'>{total.by_status.get('completed', 0):,}</th>"
        f"<th class='n'>{total.tokens['total_tokens']:,}</th><th class='n'>{_cost(total)}</th>"
        "</tr></table></section>"
    )


def _section(answers: Answers, s: Summary) -> str:
    notes = "".join(f"<p class='note'>{escape(n)}</p>" for n in [*s.pricing_lines, *s.notes])
    return (
        f"<section><h2>{escape(s.name)}</h2>{_cards(s)}{notes}<div class='grid'>"
        f"<figure><figcaption>Cost by model</figcaption>{_cost_by_model(s)}</figure>"
        f"<figure><figcaption>Status breakdown</figcaption>{_statuses(s)}</figure>"
        f"<figure><figcaption>Tokens per row</figcaption>{_tokens(answers)}</figure>"
        f"<figure><figcaption>Latency distribution (rows sent)</figcaption>"
        f"{_latency(answers, s)}</figure></div>"
        f"<h3>By model</h3>{_model_table(s)}"
        f"<h3>Costliest rows</h3>{_costliest(s)}{graded.section(s.score)}</section>"
    )


def _cards(s: Summary) -> str:
    t = s.tokens
    cards = [
        (f"{s.done:,} / {s.rows:,}", "rows done"),
        (f"{s.by_status.get('completed', 0):,}", "completed"),
        (_cost(s), "cost"),
        (
            f"{t['total_tokens']:,}",
            f"tokens ({t['prompt_tokens']:,} in, {t['completion_tokens']:,} out)",
        ),
        (f"{s.latency['p95']:.2f}s" if s.latency else "–", "latency p95"),
        (f"{s.retries:,}", f"retries, on {s.rows_retried:,} rows"),
    ]
    return (
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b><span>{escape(k)}</span></div>" for v, k in cards)
        + "</div>"
    )


def _cost_text(s: Summary) -> str:
    unpriced = f" + {rows(s.unpriced_rows)} unpriced" if s.unpriced_rows else ""
    return usd(s.cost) + unpriced


def _cost(s: Summary) -> str:
    if not s.unpriced_rows:
        return escape(usd(s.cost))
    return f"{escape(usd(s.cost))} <span class='unpriced'>+ {rows(s.unpriced_rows)} unpriced</span>"


def _axis_usd(v: float, step: float) -> str:
    """Axis money: as many decimals as the tick step needs, at least 2."""
    if v == 0:
        return "$0"
    places = max(2, -math.floor(math.log10(step))) if step > 0 else 2
    return f"${v:,.{places}f}"


def _cost_by_model(s: Summary) -> str:
    items = []
    for i, m in enumerate(s.by_model.itertuples()):
        shown = usd(m.cost)
        if m.unpriced:
            shown = "unpriced" if m.unpriced == m.rows else f"{shown} + {m.unpriced} unpriced"
        colour = "#bab0ac" if m.unpriced == m.rows else PALETTE[i % len(PALETTE)]
        items.append((str(m.model), float(m.cost), f"{shown} ({rows(m.rows)})", colour))
    return charts.hbars(items, "cost by model", _axis_usd)


def _statuses(s: Summary) -> str:
    items = [
        (status, n, f"{n:,} ({n / max(s.rows, 1):.0%})", STATUS_COLOURS.get(status, "#888"))
        for status, n in sorted(s.by_status.items(), key=lambda kv: -kv[1])
    ]
    return charts.hbars(items, "rows by status")


def _tokens(answers: Answers) -> str:
    f = answers.frame
    if len(f) > PER_ROW_MAX:
        return charts.histogram(list(f["total_tokens"]), "tokens per row", "tokens per row")
    per_row = [
        [
            r.prompt_tokens - r.cached_tokens,
            r.cached_tokens,
            r.completion_tokens - r.reasoning_tokens,
            r.reasoning_tokens,
        ]
        for r in f.itertuples()
    ]
    hover = [f"row {r.row} (id {r.label}), {r.status}" for r in answers.texts(f).itertuples()]
    names = [n for n, _ in TOKEN_SERIES]
    colours = [c for _, c in TOKEN_SERIES]
    return charts.stacked_columns(per_row, colours, names, "tokens per row", hover, "tokens")


def _latency(answers: Answers, s: Summary) -> str:
    sent = answers.frame[answers.frame["sent"]]
    markers = {"p50": s.latency["p50"], "p95": s.latency["p95"]} if s.latency else {}
    return charts.histogram(list(sent["latency_s"]), "latency", "seconds", markers)


def _model_table(s: Summary) -> str:
    body = "".join(
        f"<tr><td>{escape(str(m.model))}</td><td class='n'>{m.rows:,}</td>"
        f"<td class='n'>{m.tokens:,}</td>"
        f"<td class='n'>{'unpriced' if m.unpriced == m.rows else escape(usd(m.cost))}</td>"
        f"<td class='n'>{m.unpriced or ''}</td></tr>"
        for m in s.by_model.itertuples()
    )
    return (
        "<table><tr><th>model</th><th class='n'>rows</th><th class='n'>tokens</th>"
        f"<th class='n'>cost</th><th class='n'>unpriced rows</th></tr>{body}</table>"
    )


def _costliest(s: Summary) -> str:
    if not len(s.costliest):
        return "<p>no priced row cost anything</p>"
    body = "".join(
        f"<tr><td class='n'>{r.row}</td><td>{escape(str(r.label))}</td>"
        f"<td>{escape(str(r.model))}</td><td class='n'>{int(r.total_tokens):,}</td>"
        f"<td class='n'>{escape(usd(r.cost))}</td><td>{escape(_short(r.question))}</td></tr>"
        for r in s.costliest.itertuples()
    )
    return (
        "<table><tr><th class='n'>row</th><th>id</th><th>model</th><th class='n'>tokens</th>"
        f"<th class='n'>cost</th><th>question</th></tr>{body}</table>"
    )


def _short(text: str, width: int = 120) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= width else one[: width - 1] + "…"


def write(path: Path, html: str) -> None:
    """Write the page atomically: a temporary file beside it, then a rename."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{path}: cannot write here: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
