"""The spending cap (--max-cost): one budget for the whole job, shared by every worker.

Before a row runs, the most it is expected to cost is held in the store's ledger, atomically:
the row starts only if spent + held + its hold stays within the cap. After the run the hold
is swapped for the real cost. The first row refused stops the job (`store.stop`), so every
row not yet started ends `skipped` with the reason, on every worker.

A row's hold is its prompt counted locally (instructions and question; for a later turn of a
thread, the previous turn's prompt and answer too) plus the high end of --answer-tokens, at
the model's price, times the requests a profile's [check] may make. A row whose model is
unpriced holds nothing and adds nothing to the spent total; the CLI refuses a cap when the
job's own model is unpriced.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from worker import pricing, tokens
from worker.check import CheckRule
from worker.errors import ConfigError
from worker.models import JobSpec, Result, Row, Stop, Usage
from worker.settings import Settings
from worker.store import Ledger

CAP_REASON = "spending cap"


def answer_range(settings: Settings, max_output_tokens: int | None = None) -> tuple[int, int]:
    """The assumed answer length, never above the profile's max_output_tokens."""
    low, high = tokens.parse_range(settings.answer_tokens)
    if max_output_tokens:
        high = min(high, max_output_tokens)
    return min(low, high), high


def job_terms(settings: Settings, max_output_tokens: int | None = None) -> dict[str, Any]:
    """The JobSpec fields for cost: the price table, the cap and the answer length held."""
    book = pricing.load_prices(settings.prices) if settings.prices else pricing.NO_PRICES
    cap = pricing.parse_usd(settings.max_cost, "--max-cost") if settings.max_cost else None
    return {
        "prices": book.to_json(),
        "max_cost": "" if cap is None else str(cap),
        "answer_tokens": answer_range(settings, max_output_tokens)[1],
    }


def check(spec: JobSpec) -> None:
    """A cap needs a price: refuse it, before anything is sent, for an unpriced job model."""
    if spec.max_cost and _quote(spec, spec.model).source == "unpriced":
        raise ConfigError(
            f"--max-cost needs a price for {spec.model!r}, and none is known; add it to a "
            "price file (--prices prices.toml, see docs/cost.md)"
        )


def reason(spec: JobSpec) -> str:
    return f"not sent: the {CAP_REASON} of ${spec.max_cost} was reached (--max-cost)"


def is_cap_stop(stop: Stop | None) -> bool:
    return stop is not None and CAP_REASON in stop.reason


def job_tier(spec: JobSpec) -> str:
    """The tier the job's rows are asked at, as worker.pricing names it."""
    return pricing.BATCH if spec.batch else spec.service_tier


def row_cost(
    spec: JobSpec, row: Row, answered_by: str, usage: Usage, tier: str = ""
) -> Decimal | None:
    """What the row's run cost, priced by the model that answered (else the one asked for)
    at the tier it was answered at (the one the API reported)."""
    requested = row.model or spec.model
    return _quote(spec, answered_by or requested, requested, tier).cost(usage)


def hold_for(spec: JobSpec, row: Row, prior: Usage | None, tier: str | None = None) -> Decimal:
    """The most this row is expected to cost, at `tier` (default: the job's); 0 for an
    unpriced model."""
    model = row.model or spec.model
    question = tokens.prompt_tokens([row.question], model)
    if prior is not None:  # a later turn resends the thread so far
        prompt = prior.prompt_tokens + prior.completion_tokens + question
    else:
        prompt = question + tokens.prompt_tokens([row.instructions or spec.instructions], model)
    usage = Usage(prompt_tokens=prompt, completion_tokens=spec.answer_tokens)
    tier = job_tier(spec) if tier is None else tier
    return requests_per_row(spec) * (_quote(spec, model, tier=tier).cost(usage) or Decimal(0))


def requests_per_row(spec: JobSpec) -> int:
    """The most requests a row's hold allows for: more than one with a profile's [check]."""
    check = (spec.profile or {}).get("check")
    return CheckRule.from_json(check).requests[1] if check else 1


def reserve(ledger: Ledger, spec: JobSpec, row: Row, prior: Usage | None) -> int | None:
    """Hold the row's expected cost; returns the nano-dollars held, or None when the cap
    would be passed (and the row must not start). Without a cap: 0, and no store call."""
    if not spec.max_cost:
        return 0
    held = pricing.nano(hold_for(spec, row, prior))
    cap = int(Decimal(spec.max_cost) * pricing.NANO)
    return held if ledger.reserve(spec.job_id, row.index, held, cap) else None


def settle(ledger: Ledger, spec: JobSpec, result: Result) -> None:
    """Swap the row's hold for what it really cost."""
    if spec.max_cost:
        spent = pricing.nano(result.cost_usd) if result.cost_usd is not None else 0
        ledger.settle(spec.job_id, result.index, spent)


def _quote(spec: JobSpec, model: str, requested: str = "", tier: str = "") -> pricing.Quote:
    return pricing.quote(
        model,
        provider=spec.provider,
        base_url=spec.base_url,
        prices=pricing.PriceBook.from_json(spec.prices),
        requested=requested,
        tier=tier,
    )
