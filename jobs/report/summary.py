"""Usage and cost of a job, read back from its answers CSV: the summary printed at the end of
every run and by `askbatch report`, for any answers CSV, old or new.

An answers CSV holds everything needed: status, tokens by kind, cost_usd, model, latency and
attempts per row. A CSV from before cost_usd existed is priced now from its models and
tokens (worker.pricing), and the summary says so. An empty cost_usd on a row that used tokens
means its model is unpriced: such rows are counted apart, never as free.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from jobs.csvout import CLASH_PREFIX, PENDING
from jobs.report import priced
from worker import pricing
from worker.errors import InputError
from worker.models import RESULT_COLUMNS, Usage
from worker.pricing import usd

TOKEN_KINDS = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")
NUMBERS = (*TOKEN_KINDS, "total_tokens", "latency_s", "attempts")
# What the report reads: our result columns, and the input's own id and question.
WANTED = ("status", "error", *NUMBERS, "cost_usd", "model", "service_tier")
COSTLIEST = 5


@dataclass
class Answers:
    """One answers CSV as a frame: a row per input row, our columns under their plain names,
    `cost` as Decimal or None, `row` the 1-based row number, `label` the id or row number."""

    path: Path
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def load(
    path: Path,
    prices: pricing.PriceBook = pricing.NO_PRICES,
    base_url: str = "",
    provider: str = "",
) -> Answers:
    """Read an answers CSV; a file that is not one is an InputError naming it. `prices`,
    `base_url` and `provider` are how its job was priced (for rows without cost_usd, the
    standard price of tiered rows, and which rows a gateway's list price priced)."""
    path = Path(path)
    header = _header(path)
    ours = _result_columns(header)
    missing = [c for c in ("status", "prompt_tokens", "completion_tokens") if c not in ours]
    if missing:
        raise InputError(
            f"{path}: not an askbatch answers CSV (no {missing[0]!r} column); "
            "give the file that `askbatch run` wrote"
        )
    inputs = {c: c for c in ("id", "question") if c in header and c not in ours.values()}
    use = {**{v: k for k, v in ours.items() if k in WANTED}, **{c: f"input_{c}" for c in inputs}}
    try:
        frame = (
            pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
                usecols=list(use),
                index_col=False,  # a ragged row must never shift the columns
                engine="c",
            )
            .rename(columns=use)
            .fillna("")
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read as CSV: {str(e).splitlines()[0]}") from None
    notes: list[str] = []
    # Empty token cells on a row that was sent: the server reported no usage (not 0 tokens).
    unreported = frame["prompt_tokens"] == "" if "prompt_tokens" in frame else False
    for name in NUMBERS:
        if name not in frame:
            frame[name] = "0"
        frame[name] = _numbers(frame[name], path, ours.get(name, name))
    for name in ("model", "error", "service_tier"):
        if name not in frame:
            frame[name] = ""
    frame["row"] = range(1, len(frame) + 1)
    label = frame["input_id"] if "input_id" in frame else frame["row"].astype(str)
    frame["label"] = label.where(label != "", frame["row"].astype(str))
    frame["question"] = frame.get("input_question", "")
    if "cost_usd" in frame:
        frame["cost"] = [_decimal(v, path, i) for i, v in enumerate(frame["cost_usd"])]
    else:
        frame["cost"] = _price_now(frame, prices, base_url)
        notes.append(
            "this file has no cost_usd column (written before askbatch priced rows): costs "
            "computed now from its models and tokens"
        )
    # A row that reached the API made at least one attempt; skipped, cancelled before it
    # started and pending rows made none.
    frame["sent"] = frame["attempts"] > 0
    frame["no_usage"] = frame["sent"] & unreported
    used = (frame["prompt_tokens"] + frame["completion_tokens"]) > 0
    frame["unpriced"] = frame["cost"].isna() & used
    priced.annotate(frame, prices, base_url, provider)
    # Decimal for sums; float only to sort by.
    frame["cost_order"] = pd.to_numeric(
        frame["cost"].map(lambda c: -1.0 if c is None else float(c))
    )
    return Answers(path, frame, notes)


def _header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None


def _result_columns(header: list[str]) -> dict[str, str]:
    """Our column name → its header name. Ours come after the input's, so where the input
    had a column of the same name, ours is the rightmost one ("askbatch_model")."""
    found: dict[str, str] = {}
    for name in header:
        plain = name
        while plain.startswith(CLASH_PREFIX) and plain not in RESULT_COLUMNS:
            plain = plain[len(CLASH_PREFIX) :]
        if plain in RESULT_COLUMNS:
            found[plain] = name
    return found


def _numbers(cells: pd.Series, path: Path, column: str) -> pd.Series:
    values = pd.to_numeric(cells.replace("", "0"), errors="coerce")
    if values.isna().any():
        at = int(values.isna().to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}, row {at + 2}, column {column!r}: {cells.iloc[at]!r} is not a number"
        )
    return values


def _decimal(cell: str, path: Path, at: int) -> Decimal | None:
    if cell == "":
        return None
    try:
        return Decimal(cell)
    except InvalidOperation:
        raise InputError(
            f"{path}, row {at + 2}, column 'cost_usd': {cell!r} is not an amount"
        ) from None


def _price_now(frame: pd.DataFrame, prices: pricing.PriceBook, base_url: str) -> list:
    cost: list[Decimal | None] = []
    for model, p, c, cached, reasoning in zip(
        frame["model"],
        frame["prompt_tokens"].astype(int),
        frame["completion_tokens"].astype(int),
        frame["cached_tokens"].astype(int),
        frame["reasoning_tokens"].astype(int),
        strict=True,
    ):
        usage = Usage(int(p), int(c), int(p + c), int(cached), int(reasoning))
        cost.append(pricing.cost(model, usage, base_url=base_url, prices=prices))
    return cost


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


def summarize(answers: Answers, name: str | None = None) -> Summary:
    f = answers.frame
    counts = f["status"].replace("", PENDING).value_counts()
    by_status = {str(k): int(v) for k, v in counts.items()}
    sent = f[f["sent"]]
    retried = f["attempts"].clip(lower=1) - 1
    with_cost = f[f["cost"].notna()]
    models = f[f["sent"] | (f["total_tokens"] > 0)].assign(
        model=lambda d: d["model"].replace("", "(none)")
    )
    by_model = (
        models.groupby("model", sort=False)
        .agg(
            rows=("row", "size"),
            tokens=("total_tokens", "sum"),
            cost=("cost", lambda s: _sum(s)),
            unpriced=("unpriced", "sum"),
        )
        .reset_index()
    )
    by_model["order"] = [float(c) for c in by_model["cost"]]
    by_model = by_model.sort_values(["order", "tokens"], ascending=False).drop(columns="order")
    latency = {}
    if len(sent):
        q = sent["latency_s"].quantile([0.5, 0.95])
        latency = {
            "p50": float(q[0.5]),
            "p95": float(q[0.95]),
            "max": float(sent["latency_s"].max()),
        }
    costliest = f[f["cost_order"] > 0].nlargest(COSTLIEST, "cost_order")
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
        cost=_sum(with_cost["cost"]),
        unpriced_rows=int(f["unpriced"].sum()),
        by_model=by_model,
        latency=latency,
        sent=len(sent),
        retries=int(retried.sum()),
        rows_retried=int((retried > 0).sum()),
        costliest=costliest[["label", "row", "model", "total_tokens", "cost", "question"]],
        notes=notes,
        pricing_lines=priced.lines(f, usd),
    )


def combine(many: list[Answers]) -> Answers:
    """Several answers CSVs as one, for the total over files."""
    frame = pd.concat(
        [a.frame.assign(label=f"{a.path.name}:" + a.frame["label"]) for a in many],
        ignore_index=True,
    )
    return Answers(Path(f"all {len(many)} files"), frame, [])


def summarize_files(
    paths: list[Path], prices: pricing.PriceBook = pricing.NO_PRICES, base_url: str = ""
) -> tuple[list[tuple[Answers, Summary]], Summary | None]:
    """Each answers CSV loaded and summarised, and with more than one, all of them together."""
    parts = []
    for path in paths:
        answers = load(path, prices, base_url)
        parts.append((answers, summarize(answers)))
    total = None
    if len(parts) > 1:
        total = summarize(combine([a for a, _ in parts]))
    return parts, total


def _sum(values) -> Decimal:
    return sum((v for v in values if v is not None), Decimal(0))


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
    if elapsed_s is not None:
        rate = s.done / elapsed_s if elapsed_s > 0 else 0.0
        lines.append(f"time: {elapsed_s:.1f}s ({rate:.1f} rows/s)")
    lines += [f"note: {n}" for n in s.notes]
    return "\n".join(lines)


def _snippet(question: str, width: int = 60) -> str:
    one_line = " ".join(str(question).split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"
