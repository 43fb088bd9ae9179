"""Cost arithmetic against hand-computed figures: price files, genai-prices, cached and
reasoning tokens, self-hosted servers, unpriced models; and local token counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from worker import pricing, tokens
from worker.errors import ConfigError
from worker.models import Result, Usage, money

M = Decimal(1_000_000)


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(prompt, completion, prompt + completion, cached, reasoning)


def write(tmp_path, text: str):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


PRICES = """
[models."house-model"]
input = 1.50
cached_input = 0.15
output = 6
reasoning = 8

[models."plain-model"]
input = 0.4
output = "1.6"

[models."llama3*"]
input = 0.01
output = 0.02

[models."gpt-5-mini"]     # overrides genai-prices
input = 0.30
output = 2.50
"""


def test_price_file_with_cached_and_reasoning_tokens(tmp_path):
    book = pricing.load_prices(write(tmp_path, PRICES))
    # 1000 prompt of which 400 cached; 500 completion of which 200 reasoning:
    # 600 x 1.50 + 400 x 0.15 + 300 x 6 + 200 x 8 = 900 + 60 + 1800 + 1600 = 4360 per million.
    got = pricing.cost("house-model", usage(1000, 500, 400, 200), prices=book)
    assert got == Decimal("0.004360")
    # Without cached/reasoning prices, those tokens cost the input/output price:
    # 1000 x 0.4 + 500 x 1.6 = 1200 per million, whatever part was cached or reasoning.
    plain = pricing.cost("plain-model", usage(1000, 500, 400, 200), prices=book)
    assert plain == Decimal("0.0012")
    assert money(got) == "0.004360000" and money(None) == ""
    assert money(Decimal(0)) == "0.000000000"


def test_price_file_overrides_genai_prices_and_matches_patterns(tmp_path):
    book = pricing.load_prices(write(tmp_path, PRICES))
    # 1000 x 0.30 + 1000 x 2.50 = 2800 per million, not genai-prices' figure.
    assert pricing.cost("gpt-5-mini", usage(1000, 1000), prices=book) == Decimal("0.0028")
    # A pattern prices a self-hosted model too: 100 x 0.01 + 100 x 0.02 = 3 per million.
    local = pricing.cost(
        "llama3.2:latest", usage(100, 100), base_url="http://localhost:11434/v1", prices=book
    )
    assert local == Decimal("0.000003")


def test_genai_prices_for_openai_models_with_cached_and_reasoning():
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("gpt-5-mini", None, "openai", None)
    p = info.get_prices(datetime.now(tz=UTC))
    inp, cached, out = p.input_mtok, p.cache_read_mtok, p.output_mtok
    assert inp > 0 and out > 0 and cached is not None and cached < inp
    # By hand: uncached input at the input price, cache reads at theirs, reasoning is output.
    u = usage(10_000, 3_000, cached=4_000, reasoning=2_000)
    expected = (6_000 * inp + 4_000 * cached + 3_000 * out) / M
    assert pricing.cost("gpt-5-mini", u) == expected
    # A dated snapshot name is the same model.
    assert pricing.cost("gpt-5-mini-2025-08-07", u) == expected
    # The model the server answered with is tried first, then the one asked for.
    assert pricing.cost("gpt-5-mini-2025-08-07", u, requested="gpt-5-mini") == expected


def test_self_hosted_is_free_unknown_model_is_unpriced_never_free(tmp_path):
    u = usage(1000, 1000)
    assert pricing.cost("llama3.2", u, provider="chat", base_url="http://127.0.0.1:8080/v1") == 0
    assert pricing.cost("gpt-5-mini", u, provider="local", base_url="http://127.0.0.1:9/v1") == 0
    assert pricing.cost("no-such-model-xyz", u) is None  # on OpenAI's API: unpriced
    assert pricing.cost("no-such-model-xyz", usage(0, 0)) == 0  # nothing billed, nothing owed
    # A gateway in front of OpenAI, priced at OpenAI's prices through the price file.
    book = pricing.load_prices(
        write(tmp_path, '[base_urls]\n"http://gateway.internal:4000/v1/" = "openai"\n')
    )
    gw = "http://gateway.internal:4000/v1"
    assert pricing.cost("gpt-5-mini", u, base_url=gw, prices=book) == pricing.cost("gpt-5-mini", u)
    assert pricing.cost("no-such-model-xyz", u, base_url=gw, prices=book) is None


def test_price_book_travels_as_json_to_workers(tmp_path):
    book = pricing.load_prices(write(tmp_path, PRICES + '[base_urls]\n"http://gw/v1" = "openai"'))
    again = pricing.PriceBook.from_json(book.to_json())
    assert again == book
    assert pricing.PriceBook.from_json("") == pricing.NO_PRICES
    u = usage(1000, 500, 400, 200)
    assert pricing.cost("house-model", u, prices=again) == Decimal("0.004360")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x]\ninput = 1\n", "output is missing"),
        ("[models.x]\ninput = -1\noutput = 1\n", "is not a price"),
        ("[models.x]\ninput = 1\noutput = 1\ncache = 1\n", "unknown key 'cache'"),
        ("[modles.x]\ninput = 1\n", "unknown section 'modles'"),
        ('[base_urls]\n"http://x/v1" = "nobody-knows-me"\n', "not a provider"),
        ("[models.x\n", "not valid TOML"),
    ],
)
def test_bad_price_files_name_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        pricing.load_prices(path)
    assert str(path) in str(err.value)


def test_result_keeps_exact_cost_through_json():
    r = Result(index=3, status="completed", usage=usage(5, 7), cost_usd=Decimal("0.000000123"))
    back = Result.from_json(r.to_json())
    assert back.cost_usd == Decimal("0.000000123") and back.columns()["cost_usd"] == "0.000000123"
    unpriced = Result.from_json(Result(index=1, status="completed").to_json())
    assert unpriced.cost_usd is None and unpriced.columns()["cost_usd"] == ""


def test_usd_and_nano_dollars():
    assert pricing.nano(Decimal("0.000000001")) == 1
    assert pricing.nano(Decimal("0.0000000011")) == 2  # rounded up: the cap never under-counts
    assert pricing.parse_usd("$2.50", "--max-cost") == Decimal("2.50")
    for bad in ("0", "-1", "lots", "nan"):
        with pytest.raises(ConfigError, match="--max-cost"):
            pricing.parse_usd(bad, "--max-cost")


def test_token_counts_are_offline_and_exact_for_openai_families():
    # Reference counts from tiktoken's o200k_base / cl100k_base.
    assert tokens.count(["hello world"], "gpt-5-mini") == [2]
    assert tokens.count(["hello world"], "gpt-4") == [2]
    assert tokens.encoding_for("gpt-4o-mini") == ("o200k_base", True)
    assert tokens.encoding_for("gpt-3.5-turbo") == ("cl100k_base", True)
    assert tokens.encoding_for("llama3.2") == ("o200k_base", False)
    korean = "다음의 방정식을 풀어 주세요"
    (n,) = tokens.count([korean], "gpt-5")
    assert 0 < n < len(korean)  # whole syllables and words, not bytes
    # messages: each text + 3, plus 3 to prime the reply
    assert tokens.prompt_tokens(["hello world", "", "hello world"], "gpt-5") == 2 + 3 + 2 + 3 + 3
    assert tokens.parse_range("500") == (500, 500)
    assert tokens.parse_range("200-2000") == (200, 2000)
    with pytest.raises(ConfigError):
        tokens.parse_range("2000-200")
