"""What a run cost: tokens times price per million tokens, in exact Decimal dollars.

Prices come from the `genai-prices` package (a maintained price list, updated with the
package); a user price file overrides or adds models, and can say which provider's prices a
base URL is billed at (a gateway in front of OpenAI). Rules, in order:

1. the model is in the price file: its prices;
2. the price file's [base_urls] names the base URL's provider: that provider's prices;
3. the provider runs a server of askbatch's own (`local`), or the base URL is on this machine
   or a private network (worker.networks; Ollama, vLLM, llama.cpp on your own machines): free;
4. genai-prices knows the model at the base URL's provider (OpenAI for the default URL);
   or, for a base URL on the internet that genai-prices does not know (a gateway), at the
   model's own provider: its list price (`Quote.gateway` names the host);
5. otherwise unpriced: `None`, never 0.

Every rule prices a run at its tier (`tier`): "batch" for rows answered through the Batch API,
"flex" and "priority" for rows the API says it answered at that service tier, anything else
the standard price. genai-prices holds the tiers as price variants (`price_context`); a
price file gives a tier its own table, and a tier without one is the model's standard price.

The price file (TOML; USD per million tokens; cached_input defaults to input, reasoning to
output; a model name may be a shell pattern such as "llama3*"):

    [models."gpt-5-mini"]
    input = 0.25
    cached_input = 0.025
    output = 2.00

    [models."gpt-5-mini".batch]     # optional, likewise .flex and .priority
    input = 0.125
    output = 1.00

    [base_urls]
    "https://gateway.example.com/v1" = "openai"
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.errors import ConfigError
from worker.models import Usage
from worker.networks import is_private
from worker.providers import registry

MILLION = Decimal(1_000_000)
NANO = Decimal("1e9")  # the spending ledger counts whole nano-dollars
# Above these, a price (USD per million tokens) or an amount (USD) is a typo, not a number.
MAX_PRICE, MAX_USD = Decimal(100_000), Decimal(1_000_000_000)
PRICE_KEYS = ("input", "cached_input", "output", "reasoning")
BATCH = "batch"
PRICED_TIERS = (BATCH, "flex", "priority")  # the tiers with prices of their own
OPENAI_HOST = "api.openai.com"
GATEWAY = "(gateway)"  # _price_list's word for a public base URL genai-prices does not know


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cached input is part of input, reasoning part of output."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None
    # Per-tier prices from a price file's [models."NAME".<tier>] tables, by tier name.
    tiers: tuple[tuple[str, Price], ...] = ()

    def at(self, tier: str) -> Price:
        """The price of the tier, or this (the standard) price when it has none of its own."""
        return next((p for name, p in self.tiers if name == tier), self)

    def cost(self, usage: Usage) -> Decimal:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        reasoning_price = self.output if self.reasoning is None else self.reasoning
        total = (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_price
            + (usage.completion_tokens - reasoning) * self.output
            + reasoning * reasoning_price
        )
        return total / MILLION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: str(v) for k in PRICE_KEYS if (v := getattr(self, k)) is not None}
        out.update((name, p.to_json()) for name, p in self.tiers)
        return out


@dataclass(frozen=True)
class PriceBook:
    """The user's price file: model prices by name or pattern, and base URL → provider id."""

    models: tuple[tuple[str, Price], ...] = ()
    base_urls: tuple[tuple[str, str], ...] = ()

    def price(self, model: str) -> Price | None:
        name = model.lower()
        for pattern, price in self.models:  # exact names first, then patterns, in file order
            if pattern == name:
                return price
        for pattern, price in self.models:
            if fnmatchcase(name, pattern):
                return price
        return None

    def provider_of(self, base_url: str) -> str | None:
        key = _norm_url(base_url)
        return next((p for url, p in self.base_urls if url == key), None)

    def to_json(self) -> str:
        """JSON text, in file order (patterns match in that order): hashable in a JobSpec."""
        if not self.models and not self.base_urls:
            return ""
        return json.dumps(
            {
                "models": {name: p.to_json() for name, p in self.models},
                "base_urls": dict(self.base_urls),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PriceBook:
        return _book_from_json(text or "")


NO_PRICES = PriceBook()


@lru_cache(maxsize=32)
def _book_from_json(text: str) -> PriceBook:
    return _book(json.loads(text), "the job's price table") if text else NO_PRICES


def load_prices(path: str | Path) -> PriceBook:
    """Read a price file; every problem is a ConfigError naming the file and the key."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f, parse_float=Decimal)
    except FileNotFoundError:
        raise ConfigError(f"{path}: price file not found (--prices / ASKBATCH_PRICES)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the price file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return _book(data, str(path))


def _book(data: Mapping[str, Any], where: str) -> PriceBook:
    unknown = set(data) - {"models", "base_urls"}
    if unknown:
        raise ConfigError(
            f'{where}: unknown section {sorted(unknown)[0]!r}; expected [models."NAME"] '
            "and [base_urls]"
        )
    models: list[tuple[str, Price]] = []
    for name, entry in (data.get("models") or {}).items():
        models.append((name.lower(), _price(entry, f"{where}: models.{name!r}")))
    base_urls: list[tuple[str, str]] = []
    for url, provider in (data.get("base_urls") or {}).items():
        if not isinstance(provider, str) or not _known_provider(provider):
            raise ConfigError(
                f"{where}: base_urls.{url!r} = {provider!r} is not a provider genai-prices "
                'knows (for example "openai", "azure", "groq")'
            )
        base_urls.append((_norm_url(url), provider))
    return PriceBook(tuple(models), tuple(base_urls))


def _price(entry: Any, where: str, tiered: bool = True) -> Price:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a table of prices (input, output, ...)")
    tiers = tuple(
        (name, _price(entry[name], f"{where}.{name}", tiered=False))
        for name in PRICED_TIERS
        if tiered and name in entry
    )
    extra = set(entry) - set(PRICE_KEYS) - {name for name, _ in tiers}
    if extra:
        tables = f"; tier tables are {', '.join(PRICED_TIERS)}" if tiered else ""
        raise ConfigError(
            f"{where}: unknown key {sorted(extra)[0]!r}; prices are {', '.join(PRICE_KEYS)} "
            f"(USD per million tokens){tables}"
        )
    values: dict[str, Decimal] = {}
    for key in PRICE_KEYS:
        if key not in entry:
            continue
        if (value := _amount(entry[key], MAX_PRICE, zero=True)) is None:
            raise ConfigError(
                f"{where}: {key} = {entry[key]!r} is not a price (USD per million tokens, 0 to "
                f"{MAX_PRICE:,})"
            )
        values[key] = value
    for key in ("input", "output"):
        if key not in values:
            raise ConfigError(f"{where}: {key} is missing (USD per million tokens)")
    return Price(**values, tiers=tiers)


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def _known_provider(provider_id: str) -> bool:
    from genai_prices import data_snapshot

    try:
        data_snapshot.get_snapshot().find_provider(None, provider_id, None)
    except LookupError:
        return False
    return True


# -- pricing a run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """How a model is priced: `price` (our arithmetic), `genai` (genai-prices' model and
    provider), free, or unpriced. `source` says which, for people."""

    source: str  # "price file", "genai-prices", "self-hosted", "unpriced"
    price: Price | None = None
    genai: tuple[Any, Any] | None = None  # (ModelInfo, Provider)
    tier: str = ""  # what the run is priced at: a PRICED_TIERS name, or "" for standard
    gateway: str = ""  # the host of an unknown public base URL priced at list prices

    def cost(self, usage: Usage) -> Decimal | None:
        if self.source == "unpriced":
            # Nothing billed costs nothing, whatever the model.
            return Decimal(0) if usage.prompt_tokens + usage.completion_tokens == 0 else None
        if self.price is not None:
            return self.price.at(self.tier).cost(usage)
        if self.genai is not None:
            return _genai_cost(self.genai, usage, price_context(self.tier))
        return Decimal(0)


def price_context(tier: str) -> dict[str, str] | None:
    """genai-prices' price_context for a tier: batch processing, a service tier, or none."""
    if tier == BATCH:
        return {"processing": BATCH}
    if tier in PRICED_TIERS:
        return {"service_tier": tier}
    return None


UNPRICED = Quote("unpriced")
SELF_HOSTED = Quote("self-hosted")


def cost(
    model: str,
    usage: Usage,
    *,
    provider: str = "",
    base_url: str = "",
    prices: PriceBook = NO_PRICES,
    requested: str = "",
    tier: str = "",
) -> Decimal | None:
    """The exact cost in USD of a run of `model` with `usage`, or None when unpriced.

    `requested` is the model name that was asked for, tried when the name the server
    answered with (e.g. "llama3.2:latest", "gpt-5-mini-2025-08-07") has no price itself.
    `tier` is the tier the run was answered at ("batch", "flex", "priority"; else standard).
    """
    q = quote(
        model, provider=provider, base_url=base_url, prices=prices, requested=requested, tier=tier
    )
    return q.cost(usage)


@lru_cache(maxsize=1024)
def quote(
    model: str,
    *,
    provider: str = "",
    base_url: str = "",
    prices: PriceBook = NO_PRICES,
    requested: str = "",
    tier: str = "",
) -> Quote:
    tier = tier if tier in PRICED_TIERS else ""
    names = [n for n in dict.fromkeys((model, requested)) if n]
    for name in names:
        if (price := prices.price(name)) is not None:
            return Quote("price file", price=price, tier=tier)
    price_list = _price_list(provider, base_url, prices)
    if price_list is None:
        return SELF_HOSTED
    # A gateway: the model's own provider (gpt-5-mini: OpenAI), found from its name.
    gateway = (urlsplit(base_url.strip()).hostname or "") if price_list == GATEWAY else ""
    for name in names:
        if (found := _genai_model(name, None if gateway else price_list)) is not None:
            return Quote("genai-prices", genai=found, tier=tier, gateway=gateway)
    return UNPRICED


def _price_list(provider: str, base_url: str, prices: PriceBook) -> str | None:
    """The genai-prices provider id a run is billed by, GATEWAY for an unknown server on the
    internet, or None for a self-hosted one."""
    if mapped := prices.provider_of(base_url):
        return mapped
    if (surface := registry.find(provider)) and surface.local_server:
        return None  # a server askbatch runs itself
    if not base_url or urlsplit(base_url.strip()).hostname == OPENAI_HOST:
        return "openai"
    from genai_prices import data_snapshot

    try:
        return data_snapshot.get_snapshot().find_provider(None, None, base_url.strip()).id
    except LookupError:
        return None if is_private(base_url) else GATEWAY


def _genai_model(model: str, provider_id: str | None) -> tuple[Any, Any] | None:
    from genai_prices import data_snapshot

    try:
        provider, info = data_snapshot.get_snapshot().find_provider_model(
            model, None, provider_id, None
        )
    except LookupError:
        return None
    return info, provider


def _genai_cost(
    found: tuple[Any, Any], usage: Usage, context: dict[str, str] | None = None
) -> Decimal:
    from genai_prices import Usage as GenaiUsage

    info, provider = found
    # genai-prices counts cache reads inside input tokens and reasoning inside output, as the
    # OpenAI APIs report them.
    counts = GenaiUsage(
        input_tokens=usage.prompt_tokens,
        cache_read_tokens=min(usage.cached_tokens, usage.prompt_tokens),
        output_tokens=usage.completion_tokens,
        output_reasoning_tokens=min(usage.reasoning_tokens, usage.completion_tokens),
    )
    return info.calc_price(counts, provider, price_context=context).total_price


def per_million(q: Quote) -> tuple[Decimal, Decimal] | None:
    """(input, output) USD per million tokens of a quote, for people; None if unpriced."""
    one_in = q.cost(Usage(prompt_tokens=1_000_000, total_tokens=1_000_000))
    one_out = q.cost(Usage(completion_tokens=1_000_000, total_tokens=1_000_000))
    return None if one_in is None or one_out is None else (one_in, one_out)


def nano(value: Decimal) -> int:
    """Whole nano-dollars, rounded up: the spending ledger never under-counts."""
    return int((value * NANO).to_integral_value(rounding=ROUND_CEILING))


def dollars(nanos: object) -> Decimal:
    """Whole nano-dollars (a ledger's count, a sum of them) as dollars: `nano`'s inverse."""
    return Decimal(int(nanos)) / NANO  # type: ignore[call-overload]


def parse_usd(text: str, what: str) -> Decimal:
    """A positive dollar amount from a flag or variable ("5", "0.50", "$2")."""
    if (value := _amount(text, MAX_USD, zero=False)) is None:
        raise ConfigError(
            f"{what} {text!r} is not an amount in USD: more than 0, up to {MAX_USD:,}"
        )
    return value


def _amount(raw: object, most: Decimal, zero: bool) -> Decimal | None:
    """`raw` ("5", "$2", 0.25) as a finite Decimal from 0 (or above 0) to `most`, else None."""
    try:
        value = None if isinstance(raw, bool) else Decimal(str(raw).strip().lstrip("$"))
    except InvalidOperation:
        return None
    within = value is not None and value.is_finite() and value <= most
    return value if within and (value >= 0 if zero else value > 0) else None


def usd(value: Decimal | None) -> str:
    """Money for people: more decimals the smaller it is."""
    if value is None or value == 0:
        return "unpriced" if value is None else "$0"
    places = 2 if value >= 100 else 4 if value >= 1 else 6
    return f"${value:,.{places}f}"
