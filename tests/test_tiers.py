"""Service tiers and the Batch API's settings: flags, environment, validation; prices by tier
compared with genai-prices' own figures (computed here without askbatch's code path)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from jobs.cli.parser import build_parser, overrides
from worker import pricing
from worker.errors import ConfigError
from worker.limits import spending
from worker.models import RESULT_COLUMNS, JobSpec, Result, Row, Usage
from worker.settings import Settings

M = Decimal(1_000_000)


def load(**flags) -> Settings:
    return Settings.load(flags, dotenv=False)


def test_defaults_env_and_flags(monkeypatch):
    s = load()
    assert (s.service_tier, s.batch, s.batch_max_lines, s.batch_poll_s) == ("", False, 50_000, 30)
    monkeypatch.setenv("ASKBATCH_SERVICE_TIER", "priority")
    monkeypatch.setenv("ASKBATCH_BATCH_MAX_LINES", "1000")
    monkeypatch.setenv("ASKBATCH_BATCH_POLL_S", "2.5")
    s = load()
    assert (s.service_tier, s.batch_max_lines, s.batch_poll_s) == ("priority", 1000, 2.5)
    monkeypatch.delenv("ASKBATCH_SERVICE_TIER")
    monkeypatch.setenv("ASKBATCH_BATCH", "1")
    assert load().batch is True
    args = build_parser().parse_args(["run", "w.csv", "--service-tier", "flex"])
    assert overrides(args)["service_tier"] == "flex" and overrides(args)["batch"] is None
    args = build_parser().parse_args(["estimate", "w.csv", "--batch"])
    assert overrides(args)["batch"] is True


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"service_tier": "fast"}, {}, r"unknown service tier 'fast'.*--service-tier"),
        ({}, {"ASKBATCH_SERVICE_TIER": "scale"}, "ASKBATCH_SERVICE_TIER"),
        ({}, {"ASKBATCH_BATCH_MAX_LINES": "50001"}, r"1\.\.50,000 \(ASKBATCH_BATCH_MAX_LINES"),
        ({}, {"ASKBATCH_BATCH_MAX_LINES": "0"}, "ASKBATCH_BATCH_MAX_LINES"),
        ({}, {"ASKBATCH_BATCH_POLL_S": "0"}, "ASKBATCH_BATCH_POLL_S"),
        ({}, {"ASKBATCH_BATCH": "maybe"}, "ASKBATCH_BATCH"),
        ({"batch": True, "provider": "assistants"}, {}, "--provider responses or chat"),
        ({"batch": True, "provider": "local"}, {}, "--provider responses or chat"),
        ({"batch": True, "service_tier": "flex"}, {}, "--service-tier flex is for synchronous"),
        ({"service_tier": "flex", "provider": "assistants"}, {}, "--service-tier works with"),
        ({"provider": "local"}, {"ASKBATCH_SERVICE_TIER": "auto"}, "ASKBATCH_SERVICE_TIER"),
    ],
)
def test_bad_values_name_the_flag(monkeypatch, flags, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load(**flags)


def test_batch_runs_on_responses_and_chat():
    assert load(batch=True).batch and load(batch=True, provider="chat").batch


def test_flex_waits_at_least_fifteen_minutes_unless_told(monkeypatch):
    flex = load(service_tier="flex")
    assert flex.timeout_s >= 900 and flex.request_timeout_s >= 900
    assert load(service_tier="flex", timeout_s=60.0).timeout_s == 60
    monkeypatch.setenv("ASKBATCH_TIMEOUT", "30")
    assert load(service_tier="flex").timeout_s == 30
    assert load(service_tier="priority").request_timeout_s == 120  # only flex waits longer


def test_result_carries_its_tier_in_the_last_column():
    assert RESULT_COLUMNS[-1] == "service_tier"
    r = Result(index=0, status="completed", service_tier="flex")
    assert Result.from_json(r.to_json()).columns()["service_tier"] == "flex"
    # A result stored before the column existed reads back with an empty tier.
    old = r.to_json()
    del old["service_tier"]
    assert Result.from_json(old).service_tier == ""
    spec = JobSpec(job_id="j", provider="chat", model="m", service_tier="flex", batch=False)
    assert JobSpec.from_json(spec.to_json()) == spec


# -- prices by tier -----------------------------------------------------------------------


def genai(model: str, u: Usage, context: dict[str, str] | None) -> Decimal:
    """genai-prices' own figure for an OpenAI run, called directly."""
    counts = GenaiUsage(
        input_tokens=u.prompt_tokens,
        cache_read_tokens=u.cached_tokens,
        output_tokens=u.completion_tokens,
        output_reasoning_tokens=u.reasoning_tokens,
    )
    return calc_price(counts, model, provider_id="openai", price_context=context).total_price


U = Usage(prompt_tokens=12_000, completion_tokens=3_000, total_tokens=15_000, cached_tokens=2_000)


@pytest.mark.parametrize(
    ("tier", "context"),
    [
        ("batch", {"processing": "batch"}),
        ("flex", {"service_tier": "flex"}),
        ("priority", {"service_tier": "priority"}),
        ("default", None),
        ("auto", None),
        ("", None),
    ],
)
def test_tier_prices_are_genai_prices(tier, context):
    got = pricing.cost("gpt-5-mini", U, tier=tier)
    assert got == genai("gpt-5-mini", U, context)


def test_batch_and_flex_are_cheaper_priority_dearer_for_gpt_5_mini():
    # Guards the test above against a context genai-prices silently ignores.
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("gpt-5-mini", None, "openai", None)
    now = datetime.now(tz=UTC)
    std = info.get_prices(now).input_mtok
    batch = info.get_prices(now, {"processing": "batch"}).input_mtok
    assert batch < std < info.get_prices(now, {"service_tier": "priority"}).input_mtok
    standard = pricing.cost("gpt-5-mini", U)
    assert pricing.cost("gpt-5-mini", U, tier="batch") < standard
    assert pricing.cost("gpt-5-mini", U, tier="flex") < standard
    assert pricing.cost("gpt-5-mini", U, tier="priority") > standard


PRICES = """
[models."house"]
input = 2
output = 8

[models."house".batch]
input = 1
output = 4

[models."house".flex]
input = "0.5"
output = 2
"""


def test_price_file_tier_tables(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PRICES)
    book = pricing.load_prices(path)
    u = Usage(prompt_tokens=1000, completion_tokens=1000, total_tokens=2000)
    # 1000 x 2 + 1000 x 8; batch 1000 x 1 + 1000 x 4; flex 1000 x 0.5 + 1000 x 2 (per million)
    assert pricing.cost("house", u, prices=book) == Decimal(10_000) / M
    assert pricing.cost("house", u, prices=book, tier="batch") == Decimal(5_000) / M
    assert pricing.cost("house", u, prices=book, tier="flex") == Decimal(2_500) / M
    # A tier without a table of its own is the standard price.
    assert pricing.cost("house", u, prices=book, tier="priority") == Decimal(10_000) / M
    again = pricing.PriceBook.from_json(book.to_json())
    assert pricing.cost("house", u, prices=again, tier="batch") == Decimal(5_000) / M


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x]\ninput = 1\noutput = 1\nbatch = 0.5\n", "batch must be a table"),
        ("[models.x]\ninput = 1\noutput = 1\n[models.x.batch]\ninput = 1\n", "output is missing"),
        ("[models.x]\ninput = 1\noutput = 1\n[models.x.slow]\ninput = 1\n", "tier tables are"),
        (
            "[models.x]\ninput = 1\noutput = 1\n[models.x.batch.flex]\ninput = 1\noutput = 1\n",
            "unknown key 'flex'",
        ),
    ],
)
def test_bad_tier_tables(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        pricing.load_prices(path)


def test_holds_and_row_costs_follow_the_tier():
    row = Row(index=0, id="1", question="What is 2 + 2?")
    base = JobSpec(job_id="j", provider="responses", model="gpt-5-mini", answer_tokens=2000)
    batch = JobSpec(**{**base.to_json(), "batch": True})
    flex = JobSpec(**{**base.to_json(), "service_tier": "flex"})
    standard = spending.hold_for(base, row, None)
    assert spending.hold_for(batch, row, None) < standard
    assert spending.hold_for(flex, row, None) < standard
    assert spending.hold_for(batch, row, None, tier="") == standard
    assert spending.row_cost(base, row, "gpt-5-mini", U, "flex") == genai(
        "gpt-5-mini", U, {"service_tier": "flex"}
    )
    assert spending.row_cost(base, row, "gpt-5-mini", U) == genai("gpt-5-mini", U, None)


# -- gateways are not free --------------------------------------------------------------------

PRIVATE = [
    "http://localhost:11434/v1",
    "http://127.0.0.1:8080/v1",
    "http://[::1]:8000/v1",
    "http://10.20.30.40/v1",
    "http://192.168.1.9:8000/v1",
    "http://172.16.0.2/v1",
    "http://172.31.255.254/v1",
    "http://llm-box.local:8000/v1",
    "http://ollama:11434/v1",  # a single-label name: a container or machine on its network
]
PUBLIC = ["https://llm-gateway.example.com/v1", "http://172.32.0.1/v1", "https://8.8.8.8/v1"]


@pytest.mark.parametrize("url", PRIVATE)
def test_own_servers_are_free(url):
    assert pricing.cost("gpt-5-mini", U, provider="chat", base_url=url) == 0
    assert pricing.quote("gpt-5-mini", provider="chat", base_url=url).source == "self-hosted"


@pytest.mark.parametrize("url", PUBLIC)
def test_a_gateway_is_priced_at_the_models_list_price(url):
    q = pricing.quote("gpt-5-mini", provider="chat", base_url=url)
    assert q.gateway == url.split("/")[2].split(":")[0]
    assert q.cost(U) == genai("gpt-5-mini", U, None) > 0
    # ...at the job's tier too, and a model genai-prices does not know is unpriced, not free.
    flex = pricing.cost("gpt-5-mini", U, provider="chat", base_url=url, tier="flex")
    assert flex == genai("gpt-5-mini", U, {"service_tier": "flex"})
    assert pricing.cost("house-finetune-7b", U, provider="chat", base_url=url) is None
    # --provider local is free wherever its server is.
    assert pricing.cost("gpt-5-mini", U, provider="local", base_url=url) == 0


def test_price_file_base_urls_still_win(tmp_path):
    path = tmp_path / "p.toml"
    gw, own = "https://llm-gateway.example.com/v1", "http://10.0.0.5/v1"
    path.write_text(f'[base_urls]\n"{gw}" = "groq"\n"{own}" = "openai"\n')
    book = pricing.load_prices(path)
    # Mapped to groq, which has no gpt-5-mini: unpriced rather than OpenAI's list price.
    assert pricing.cost("gpt-5-mini", U, base_url=gw, prices=book) is None
    # A private server billed as OpenAI: priced, and not reported as a gateway.
    q = pricing.quote("gpt-5-mini", base_url=own, prices=book)
    assert q.cost(U) == genai("gpt-5-mini", U, None) and q.gateway == ""
