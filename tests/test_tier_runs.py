"""Synchronous runs at a service tier, end to end: the real CLI and SDK against the double,
which reports the tier it answered at; each row priced at that tier by genai-prices' own
figures (computed here directly); a flex 429 resource-unavailable retried, never a halt."""

from __future__ import annotations

from decimal import Decimal

import httpx2
import openai
import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from tests.conftest import askbatch, base_env, write_csv
from tests.double.expect import answer_for, usage_for
from worker.fatal import classify
from worker.retry import is_retryable

NINE = Decimal("1e-9")


def gateway_prices(tmp_path, api) -> str:
    """Bill the double (a loopback server) at OpenAI's prices, as the README shows."""
    path = tmp_path / "prices.toml"
    path.write_text(f'[base_urls]\n"{api.base_url}" = "openai"\n')
    return str(path)


def flex_cost(question: str, context: dict[str, str] | None) -> Decimal:
    prompt, completion = usage_for([question], answer_for(question, 1))
    counts = GenaiUsage(input_tokens=prompt, output_tokens=completion)
    price = calc_price(counts, "gpt-5-mini", provider_id="openai", price_context=context)
    return price.total_price.quantize(NINE)


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_flex_run_reports_the_tier_prices_it_and_retries_busy(tmp_path, api, provider):
    questions = ["What is 2 + 2?", "Name a prime [[flexbusy:2]]"]
    sheet = write_csv(tmp_path / "w.csv", ["question"], [[q] for q in questions])
    out = tmp_path / "o.csv"
    args = ["run", str(sheet), "-o", str(out), "--provider", provider, "--model", "gpt-5-mini"]
    args += ["--service-tier", "flex", "--prices", gateway_prices(tmp_path, api)]
    run = askbatch(args, base_env(tmp_path, api), out)
    assert run.code == 0, run.stderr
    rows = run.rows()
    assert [r["service_tier"] for r in rows] == ["flex", "flex"]
    assert list(rows[0])[-1] == "service_tier"  # the last column
    for row, question in zip(rows, questions, strict=True):
        assert Decimal(row["cost_usd"]) == flex_cost(question, {"service_tier": "flex"})
        assert Decimal(row["cost_usd"]) < flex_cost(question, None)  # flex is cheaper
    # Two 429s resource-unavailable, then the answer: retried, the job went on.
    assert (rows[0]["attempts"], rows[1]["attempts"]) == ("1", "3")
    assert api.stats()["status_429"] == 2


def test_auto_is_answered_at_default_and_priced_standard(tmp_path, api):
    sheet = write_csv(tmp_path / "w.csv", ["question"], [["Hello there"]])
    out = tmp_path / "o.csv"
    args = ["run", str(sheet), "-o", str(out), "--model", "gpt-5-mini", "--service-tier", "auto"]
    run = askbatch([*args, "--prices", gateway_prices(tmp_path, api)], base_env(tmp_path, api), out)
    assert run.code == 0, run.stderr
    (row,) = run.rows()
    assert row["service_tier"] == "default"
    assert Decimal(row["cost_usd"]) == flex_cost("Hello there", None)


def test_flex_on_a_model_without_it_stops_the_job_with_exit_2(tmp_path, api):
    sheet = write_csv(tmp_path / "w.csv", ["question"], [["one"], ["two"], ["three"]])
    out = tmp_path / "o.csv"
    args = ["run", str(sheet), "-o", str(out), "--model", "gpt-4o", "--service-tier", "flex"]
    run = askbatch(args, base_env(tmp_path, api), out)
    assert run.code == 2, run.stderr
    assert "service_tier" in run.stderr and "Flex is not available" in run.stderr
    assert "Traceback" not in run.stderr


def flex_busy_error(code, type, message):
    request = httpx2.Request("POST", "https://api.openai.com/v1/responses")
    response = httpx2.Response(429, request=request)
    body = {"message": message, "type": type, "param": None, "code": code}
    return openai.APIStatusError(message, response=response, body=body)


@pytest.mark.parametrize(
    ("code", "type", "message"),
    [
        ("resource_unavailable", "rate_limit_error", "Resource unavailable"),
        (None, "requests", "Resource Unavailable: please retry later"),
        ("rate_limit_exceeded", "service_tier_capacity_exceeded", "Resource unavailable"),
    ],
)
def test_flex_capacity_429_is_retried_not_a_halt(code, type, message):
    exc = flex_busy_error(code, type, message)
    assert is_retryable(exc)
    assert classify(exc, provider="responses", base_url="", model="gpt-5-mini") is None


# -- the double's service_tier, as the API takes it -------------------------------------------


def test_double_reports_the_tier_and_refuses_what_the_api_refuses(api):
    with openai.OpenAI(api_key="sk-test", base_url=api.base_url, max_retries=0) as sdk:
        for asked, reported in ((None, "default"), ("auto", "default"), ("flex", "flex")):
            extra = {} if asked is None else {"service_tier": asked}
            r = sdk.responses.create(model="gpt-5-mini", input="hi", **extra)
            c = sdk.chat.completions.create(
                model="o4-mini", messages=[{"role": "user", "content": "hi"}], **extra
            )
            assert (r.service_tier, c.service_tier) == (reported, reported)
        with pytest.raises(openai.BadRequestError) as bad:
            sdk.responses.create(model="gpt-4o", input="hi", service_tier="flex")
        assert bad.value.body["param"] == "service_tier"
        for _ in range(2):
            with pytest.raises(openai.RateLimitError, match="Resource unavailable"):
                sdk.responses.create(model="gpt-5", input="q [[flexbusy:2]]", service_tier="flex")
        third = sdk.responses.create(model="gpt-5", input="q [[flexbusy:2]]", service_tier="flex")
        assert third.service_tier == "flex"
        # Only flex requests are busy.
        assert sdk.responses.create(model="gpt-5", input="z [[flexbusy:5]]").status == "completed"


# -- the estimate at the job's tier -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "context", "words"),
    [
        (["--batch"], {"processing": "batch"}, "at Batch API prices (--batch)"),
        (
            ["--service-tier", "flex"],
            {"service_tier": "flex"},
            "at flex prices (--service-tier flex)",
        ),
        (
            ["--service-tier", "priority"],
            {"service_tier": "priority"},
            "at priority prices (--service-tier priority)",
        ),
    ],
)
def test_estimate_prices_at_the_tier_the_job_will_use(tmp_path, api, flags, context, words):
    from jobs.report.summary import usd
    from worker import tokens

    questions = ["What is 6 x 7?", "Define a prime."]
    sheet = write_csv(tmp_path / "w.csv", ["question"], [[q] for q in questions])
    args = ["estimate", str(sheet), "--model", "gpt-5-mini", "--answer-tokens", "500"]
    # OpenAI's own URL: priced at its list prices. The estimate sends nothing there.
    args += ["--base-url", "https://api.openai.com/v1", *flags]
    run = askbatch(args, base_env(tmp_path, api), tmp_path / "none.csv")
    assert run.code == 0, run.stderr
    assert sum(api.stats()["requests"].values()) == 0
    # Each request: its question + 3, and 3 for the reply; 500 answer tokens each.
    prompt = sum(n + 3 + 3 for n in tokens.count(questions, "gpt-5-mini"))
    counts = GenaiUsage(input_tokens=prompt, output_tokens=1000)
    tiered = calc_price(counts, "gpt-5-mini", provider_id="openai", price_context=context)
    standard = calc_price(counts, "gpt-5-mini", provider_id="openai")
    line = next(x for x in run.stdout.splitlines() if x.startswith("expected cost"))
    assert line == (
        f"expected cost: {usd(tiered.total_price)} {words} "
        f"(at standard prices: {usd(standard.total_price)})"
    ), run.stdout
    if "--batch" in flags:  # genai-prices: the Batch API is half the standard price
        assert tiered.total_price * 2 == standard.total_price
