"""Usage and cost of a job, read back from its answers CSV: the summary printed at the end of
every run and by `askbatch report`, for any answers CSV, old or new.

An answers CSV holds everything needed: status, tokens by kind, cost_usd, model, latency and
attempts per row. A CSV from before cost_usd existed is priced now from its models and
tokens (worker.pricing), and the summary says so. An empty cost_usd on a row that used tokens
means its model is unpriced: such rows are counted apart, never as free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd

from jobs.csvout import PENDING
from jobs.report import priced, scores
from jobs.report.answers import TOKEN_KINDS, Answers, combine, load
from worker import pricing
from worker.pricing import dollars, usd

COSTLIEST = 5


# -- the summary ----------------------------------------------------------------------------


@dataclass
class Summary:
    name: str
    rows: int
    done: int
    by_status: dict[str, int]
    tokens: dict[str, int]
    cost: Decimal  # of priced rows
    unpriced_rows: int
    by_model: pd.DataFrame  # model, rows, tokens, cost (Decimal), unpriced
    latency: dict[str, float]  # p50, p95, max over rows sent; empty if none
    sent: int
    retries: int
    rows_retried: int
    costliest: pd.DataFrame  # label, row, model, total_tokens, cost, question
    notes: list[str]
    # Cost by tier against standard prices, and rows a gateway's list price priced.
    pricing_lines: list[str] = field(default_factory=list)
    # The answer key's score (jobs/report/scores.py), when rows were graded.
    score: scores.Score | None = None


def summarize(answers: Answers, name: str | None = None, by: Sequence[str] = ()) -> Summary:
    f = answers.frame
    by_status: dict[str, int] = {}
    # As plain values: ties then keep the order in which the rows first show them.
    for status, n in f["status"].astype(object).value_counts().items():
        key = str(status) or PENDING
        by_status[key] = by_status.get(key, 0) + int(n)
    sent = f["sent"]
    retried = f["attempts"].clip(lower=1) - 1
    models = f.loc[sent | (f["total_tokens"] > 0), ["model", "total_tokens", "cost", "unpriced"]]
    by_model = (
        models.assign(model=models["model"].astype(object).replace("", "(none)"))
        .groupby("model", sort=False)
        .agg(
            rows=("total_tokens", "size"),
            tokens=("total_tokens", "sum"),
            cost=("cost", "sum"),
            unpriced=("unpriced", "sum"),
        )
        .reset_index()
        .sort_values(["cost", "tokens"], ascending=False)
    )
    by_model["cost"] = [dollars(c) for c in by_model["cost"]]
    latency = {}
    if sent.any():
        seconds = f.loc[sent, "latency_s"]
        q = seconds.quantile([0.5, 0.95])
        latency = {"p50": float(q[0.5]), "p95": float(q[0.95]), "max": float(seconds.max())}
    top = f["cost_order"].nlargest(COSTLIEST)
    costliest = answers.texts(f.loc[top[top > 0].index])
    costliest["cost"] = [dollars(c) for c in costliest["cost"]]
    notes = list(answers.notes)
    if (n := int(f["no_usage"].sum())) > 0:
        notes.append(
            f"{rows(n)} had no usage reported by the server: their token cells are empty, "
            "and the token totals leave them out"
        )
    if (n := int(f["unpriced"].sum())) > 0:
        names = ", ".join(sorted(set(f.loc[f["unpriced"], "model"]) - {""})) or "unknown model"
        notes.append(
            f"{rows(n)} unpriced ({names}): no price is known, so the cost is unknown, not 0; "
            "add the model to a price file (--prices)"
        )
    return Summary(
        name=name or str(answers.path),
        rows=len(f),
        done=int(len(f) - by_status.get(PENDING, 0)),
        by_status=by_status,
        tokens={k: int(f[k].sum()) for k in (*TOKEN_KINDS, "total_tokens")},
        cost=dollars(f["cost"].sum()),
        unpriced_rows=int(f["unpriced"].sum()),
        by_model=by_model,
        latency=latency,
        sent=int(sent.sum()),
        retries=int(retried.sum()),
        rows_retried=int((retried > 0).sum()),
        costliest=costliest[["label", "row", "model", "total_tokens", "cost", "question"]],
        notes=notes,
        pricing_lines=priced.lines(f, usd),
        score=scores.score(answers, answers.key, list(by)),
    )


def summarize_files(
    paths: list[Path],
    prices: pricing.PriceBook = pricing.NO_PRICES,
    base_url: str = "",
    regrade: dict[str, str] | None = None,
    by: Sequence[str] = (),
) -> tuple[list[tuple[Answers, Summary]], Summary | None]:
    """Each answers CSV loaded and summarised, and with more than one, all of them together;
    `regrade` and `by`: see `load` and jobs/report/scores.py."""
    parts = []
    for path in paths:
        answers = load(path, prices, base_url)
        if regrade:  # `report --expected`: graded again from the file, asking nothing
            answers.frame["correct"] = pd.Categorical(scores.regrade(path, regrade))
            answers.key = regrade["expected"]
        parts.append((answers, summarize(answers, by=by)))
    total = None
    if len(parts) > 1:
        total = summarize(combine([a for a, _ in parts]), by=by)
    return parts, total


def rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def text(s: Summary, elapsed_s: float | None = None) -> str:
    """The summary as lines for a terminal."""
    statuses = ", ".join(f"{n} {k}" for k, n in sorted(s.by_status.items(), key=lambda kv: -kv[1]))
    t = s.tokens
    lines = [
        f"{s.done} of {s.rows} rows: {statuses or 'none'}",
        f"tokens: {t['prompt_tokens']:,} prompt ({t['cached_tokens']:,} cached) + "
        f"{t['completion_tokens']:,} completion ({t['reasoning_tokens']:,} reasoning) "
        f"= {t['total_tokens']:,}",
    ]
    unpriced = f" + {rows(s.unpriced_rows)} unpriced" if s.unpriced_rows else ""
    lines.append(f"cost: {usd(s.cost)}{unpriced}")
    lines += s.pricing_lines
    width = max((len(m) for m in s.by_model["model"]), default=0)
    for m in s.by_model.itertuples():
        cost = usd(m.cost)
        if m.unpriced:
            cost = "unpriced" if m.unpriced == m.rows else f"{cost} + {rows(m.unpriced)} unpriced"
        lines.append(f"  {m.model:<{width}}  {rows(m.rows):>11}  {m.tokens:>10,} tokens  {cost}")
    if s.latency:
        lat = s.latency
        lines.append(
            f"latency: p50 {lat['p50']:.2f}s, p95 {lat['p95']:.2f}s, max {lat['max']:.2f}s "
            f"({s.sent:,} rows sent)"
        )
    lines.append(f"retries: {s.retries:,} (on {rows(s.rows_retried)})")
    if len(s.costliest):
        lines.append("costliest rows:")
        for r in s.costliest.itertuples():
            lines.append(
                f"  {usd(r.cost):>10}  row {r.row} (id {r.label}), {r.model}, "
                f"{int(r.total_tokens):,} tokens: {_snippet(r.question)}"
            )
    if s.score is not None:
        lines += scores.text(s.score)
    if elapsed_s is not None:
        rate = s.done / elapsed_s if elapsed_s > 0 else 0.0
        lines.append(f"time: {elapsed_s:.1f}s ({rate:.1f} rows/s)")
    lines += [f"note: {n}" for n in s.notes]
    return "\n".join(lines)


def _snippet(question: str, width: int = 60) -> str:
    one_line = " ".join(str(question).split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"
