"""The pre-flight estimate (`askbatch estimate`, `askbatch run --dry-run`): what a worksheet
would cost, from its tokens counted locally and an assumed answer length. Calls no API.

Per row the prompt is the instructions, the question and, for a later turn of a thread, every
earlier question and (assumed) answer of that thread, since each turn resends them; plus the
few tokens the chat format adds per message. No prompt caching is assumed, so cached input
only makes the real cost lower. Costs are linear in tokens, so each model is priced once on
its totals, at the tier the job will be asked at (`--batch`: batch prices; `--service-tier
flex` or `priority`: that tier's), and also at standard prices to compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice

from jobs.intake import Worksheet
from jobs.report import usd
from jobs.submit import load_job_profile
from worker import pricing, tokens
from worker.check import CheckRule
from worker.limits import spending
from worker.models import Row, Usage
from worker.profile import Profile
from worker.settings import DEFAULT_MODEL, Settings

CHUNK = 2000  # rows counted per tokenizer call
TIER_WORDS = {
    pricing.BATCH: "Batch API prices (--batch)",
    "flex": "flex prices (--service-tier flex)",
    "priority": "priority prices (--service-tier priority)",
}


@dataclass
class ModelTotals:
    model: str
    rows: int = 0
    prompt_low: int = 0
    prompt_high: int = 0
    answer_low: int = 0
    answer_high: int = 0
    quote: pricing.Quote | None = None
    counter: str = ""
    standard: pricing.Quote | None = None  # the same model at standard prices

    def cost(self, high: bool, standard: bool = False) -> Decimal | None:
        usage = (
            Usage(self.prompt_high, self.answer_high, self.prompt_high + self.answer_high)
            if high
            else Usage(self.prompt_low, self.answer_low, self.prompt_low + self.answer_low)
        )
        quote = self.standard if standard else self.quote
        return quote.cost(usage) if quote else None


@dataclass
class Estimate:
    path: str
    rows: int  # to be sent
    blank: int
    answer_tokens: tuple[int, int]
    models: dict[str, ModelTotals] = field(default_factory=dict)
    tier: str = ""  # the tier priced at (worker.pricing.PRICED_TIERS), "" for standard
    # Requests a row makes (low, high): a profile's [check] adds the solving of each answer
    # and may ask for up to `attempts` answers (worker/check.py).
    requests: tuple[int, int] = (1, 1)

    def cost(self, m: ModelTotals, high: bool, standard: bool = False) -> Decimal | None:
        cost = m.cost(high, standard)
        return None if cost is None else cost * self.requests[high]

    def total(self, high: bool, standard: bool = False) -> Decimal:
        costs = (self.cost(m, high, standard) for m in self.models.values())
        return sum((c for c in costs if c is not None), Decimal(0))

    @property
    def unpriced_rows(self) -> int:
        return sum(m.rows for m in self.models.values() if m.quote.source == "unpriced")


def estimate(
    sheet: Worksheet,
    *,
    model: str,
    instructions: str,
    provider: str,
    base_url: str,
    prices: pricing.PriceBook,
    answer_tokens: tuple[int, int],
    tier: str = "",
    check: CheckRule | None = None,
) -> Estimate:
    low, high = answer_tokens
    tier = tier if tier in pricing.PRICED_TIERS else ""
    est = Estimate(str(sheet.path), 0, len(sheet.blank_rows), answer_tokens, tier=tier)
    if check is not None:
        est.requests = check.requests
    history: dict[str, tuple[int, int]] = {}  # thread → tokens resent by its next turn
    fixed: dict[tuple[str, str], int] = {}  # (model, instructions) → their prompt tokens
    rows = (r for r in sheet.rows() if r.index not in sheet.blank_rows)
    while chunk := list(islice(rows, CHUNK)):
        for row, q in zip(chunk, _question_tokens(chunk, model), strict=True):
            name = row.model or model
            m = est.models.get(name)
            if m is None:
                where = {"provider": provider, "base_url": base_url, "prices": prices}
                m = est.models[name] = ModelTotals(
                    name,
                    quote=pricing.quote(name, **where, tier=tier),
                    counter=tokens.counter_name(name),
                    standard=pricing.quote(name, **where),
                )
            text = row.instructions or instructions
            if (name, text) not in fixed:
                fixed[name, text] = tokens.prompt_tokens([text], name) if text else tokens.PER_REPLY
            q += tokens.PER_MESSAGE
            before_low, before_high = history.get(row.thread, (0, 0)) if row.thread else (0, 0)
            m.rows += 1
            m.prompt_low += fixed[name, text] + before_low + q
            m.prompt_high += fixed[name, text] + before_high + q
            m.answer_low += low
            m.answer_high += high
            if row.thread:
                answer_low, answer_high = low + tokens.PER_MESSAGE, high + tokens.PER_MESSAGE
                history[row.thread] = (before_low + q + answer_low, before_high + q + answer_high)
    est.rows = sum(m.rows for m in est.models.values())
    return est


def for_settings(settings: Settings, sheet: Worksheet, profile: Profile | None = None) -> Estimate:
    """The estimate of a worksheet as a run with these settings would ask it: their model,
    instructions and profile (`profile`, when the caller has read it), price file and answer
    length."""
    profile = load_job_profile(settings) if profile is None else profile
    prices = pricing.load_prices(settings.prices) if settings.prices else pricing.NO_PRICES
    return estimate(
        sheet,
        model=settings.model or profile.model or DEFAULT_MODEL,
        instructions=settings.instructions or profile.instructions,
        provider=settings.provider,
        base_url=settings.base_url,
        prices=prices,
        answer_tokens=spending.answer_range(settings, profile.max_output_tokens),
        tier=pricing.BATCH if settings.batch else settings.service_tier,
        check=CheckRule.from_json(profile.check) if profile.check else None,
    )


def _question_tokens(rows: list[Row], default_model: str) -> list[int]:
    """Token counts of the questions, one tokenizer call per model in the chunk."""
    counts = [0] * len(rows)
    by_model: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_model.setdefault(row.model or default_model, []).append(i)
    for name, where in by_model.items():
        for i, n in zip(where, tokens.count([rows[i].question for i in where], name), strict=True):
            counts[i] = n
    return counts


def text(est: Estimate, max_cost: Decimal | None = None) -> str:
    low, high = est.answer_tokens
    answer = f"{low:,}" if low == high else f"{low:,}–{high:,}"
    blank = f" ({est.blank:,} blank, not sent)" if est.blank else ""
    table = [("model", "rows", "input tokens", "cost", "price")]
    for m in est.models.values():
        prompt = f"{m.prompt_low:,}"
        if m.prompt_low != m.prompt_high:
            prompt += f"–{m.prompt_high:,}"
        table.append(
            (
                m.model,
                f"{m.rows:,}",
                prompt,
                _range(est.cost(m, False), est.cost(m, True)),
                _source(m.quote),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = [f"estimate for {est.path}: {est.rows:,} rows to ask{blank}; no API was called"]
    for r in table:
        lines.append(
            f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
            f"{r[3]:<{widths[3]}}  {r[4]}".rstrip()
        )
    counters: dict[str, list[str]] = {}
    for m in est.models.values():
        counters.setdefault(m.counter, []).append(m.model)
    lines.append(
        "input tokens counted locally: "
        + "; ".join(f"{c} for {', '.join(ms)}" for c, ms in counters.items())
        + "; instructions, thread history and per-message overhead included"
    )
    lines.append(
        f"answers assumed {answer} tokens each (--answer-tokens; reasoning tokens count as "
        "answer tokens); no prompt caching assumed"
    )
    if est.requests != (1, 1):
        lo_n, hi_n = est.requests
        lines.append(
            f"the profile's [check] makes {lo_n}–{hi_n} requests a row (each answer, and its "
            f"solving again), each counted like the row's own: costs are {lo_n}–{hi_n} times a "
            "single answer's"
        )
    total = _range(est.total(False), est.total(True))
    if n := est.unpriced_rows:
        total += f", not counting {n:,} row{'s' if n != 1 else ''} of unpriced models"
    if est.tier:
        standard = _range(est.total(False, True), est.total(True, True))
        total += f" at {TIER_WORDS[est.tier]} (at standard prices: {standard})"
    lines.append(f"expected cost: {total}")
    if max_cost is not None:
        lo_total, hi_total = est.total(False), est.total(True)
        if hi_total <= max_cost:
            verdict = "the whole job fits even at the high estimate"
        elif lo_total > max_cost:
            verdict = "the cap will stop the job before it ends, even at the low estimate"
        else:
            verdict = "the cap may stop the job before it ends"
        lines.append(f"spending cap {usd(max_cost)}: {verdict}")
    return "\n".join(lines)


def _range(lo: Decimal | None, hi: Decimal | None) -> str:
    if lo is None or hi is None:
        return "unpriced"
    return usd(lo) if lo == hi else f"{usd(lo)} – {usd(hi)}"


def _source(quote: pricing.Quote | None) -> str:
    if quote is None or quote.source == "unpriced":
        return "no price known: add it to a price file (--prices)"
    if quote.source == "self-hosted":
        return "self-hosted server: free unless priced"
    rates = pricing.per_million(quote)
    source = quote.source + (f", list price through {quote.gateway}" if quote.gateway else "")
    if rates is None:
        return source
    return f"{source}: ${_plain(rates[0])} in, ${_plain(rates[1])} out per 1M tokens"


def _plain(d: Decimal) -> str:
    return f"{d.normalize():f}"
