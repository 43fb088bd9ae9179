"""How an answers CSV's rows were priced: by tier, and through gateways.

Cost by tier (batch, flex, priority, standard), what the same rows would have cost at
standard prices, and which rows a provider's list price priced because they went through a
gateway (worker.pricing, rule 4)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pandas as pd

from worker import pricing
from worker.models import Usage
from worker.pricing import dollars

STANDARD = "standard"
TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


def price_tier(cell: str) -> str:
    """The price a row's reported service_tier bills at: a PRICED_TIERS name or standard."""
    return cell if cell in pricing.PRICED_TIERS else STANDARD


def annotate(
    frame: pd.DataFrame, prices: pricing.PriceBook, base_url: str, provider: str = ""
) -> None:
    """Add `tier`, `standard_cost` (the row's cost at standard prices, in nano-dollars as
    `cost` is) and `gateway` (the host whose list price priced it, else "") to a loaded
    answers frame."""
    frame["tier"] = frame["service_tier"].map(price_tier)
    frame["standard_cost"] = frame["cost"]
    frame["gateway"] = pd.Categorical([""] * len(frame))
    where = {"provider": provider, "base_url": base_url, "prices": prices}
    # Only the columns needed: a copy of every column would double the frame's memory.
    priced = frame.loc[frame["cost"].notna(), ["model", "tier", "cost", *TOKENS]]
    for (model, tier), group in priced.groupby(["model", "tier"], sort=False):
        if quote_gateway := pricing.quote(model, **where).gateway:
            if quote_gateway not in frame["gateway"].cat.categories:
                frame["gateway"] = frame["gateway"].cat.add_categories(quote_gateway)
            frame.loc[group.index, "gateway"] = quote_gateway
        if tier == STANDARD:
            continue
        # Prices are linear in tokens: one ratio per model and tier, from its summed usage.
        p, c, cached, reasoning = (int(group[k].sum()) for k in TOKENS)
        usage = Usage(p, c, p + c, cached, reasoning)
        at_tier = pricing.cost(model, usage, **where, tier=tier)
        standard = pricing.cost(model, usage, **where)
        if at_tier and standard is not None:
            ratio = standard / at_tier
            # Rounded to the nano-dollar: a float product is exact far beyond that.
            scaled = (group["cost"].astype("float64") * float(ratio)).round()
            frame.loc[group.index, "standard_cost"] = scaled.astype("Int64")


def lines(frame: pd.DataFrame, usd: Callable[[Decimal], str]) -> list[str]:
    """The summary's lines on tiers and gateways, money written by `usd`; none for a job
    all at standard prices that no gateway priced."""
    out: list[str] = []
    # Rows never sent have no cost.
    priced = frame.loc[frame["cost"].notna(), ["tier", "cost", "standard_cost", "gateway"]]
    if (priced["tier"] != STANDARD).any():
        parts = []
        # By name: the column is a category, whose own order is not the names' order.
        for tier, group in sorted(priced.groupby("tier", observed=True), key=_name):
            n = len(group)
            parts.append(f"{tier} {usd(dollars(group['cost'].sum()))} ({n:,} row{'s' * (n != 1)})")
        paid = dollars(priced["cost"].sum())
        standard = dollars(priced["standard_cost"].sum())
        saved = f", saved {usd(standard - paid)}" if standard > paid else ""
        out.append(f"cost by tier: {', '.join(parts)}; at standard prices {usd(standard)}{saved}")
    via = priced[priced["gateway"] != ""]
    for host, group in sorted(via.groupby("gateway", observed=True), key=_name):
        n = len(group)
        out.append(
            f"{n:,} row{'s' * (n != 1)} priced at the provider's list price through {host} "
            "(a server genai-prices does not know, not on this machine or a private "
            'network); bill it otherwise with [base_urls] "URL" = "provider" or the model '
            "in a price file (--prices)"
        )
    return out


def _name(group: tuple) -> str:
    return str(group[0])
