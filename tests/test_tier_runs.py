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

from jobs.report.summary import usd
from tests.conftest import askbatch, base_env, write_csv
from tests.double.expect import answer_for, usage_for
from worker.fatal import classify
from worker.retry import is_retryable

NINE = Decimal("1e-9")


def gateway_prices(tmp_path, api) -> str:
    """Bill the double (a loopback server) at OpenAI's prices, as docs/cost.md shows."""
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
    # The summary: cost by tier, and the same rows at standard prices.
    paid = sum(flex_cost(q, {"service_tier": "flex"}) for q in questions)
    standard = sum(flex_cost(q, None) for q in questions)
    assert (
        f"cost by tier: flex {usd(paid)} (2 rows); at standard prices {usd(standard)}, "
        f"saved {usd(standard - paid)}"
    ) in run.stderr, run.stderr


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


# -- the report by tier, and gateways -----------------------------------------------------------


def answers_file(path, rows):
    """An answers CSV as askbatch writes it: (question, model, service_tier, prompt,
    completion, cost_usd) per row."""
    from worker.models import RESULT_COLUMNS

    out = []
    for q, model, tier, p, c, cost in rows:
        cells = dict.fromkeys(RESULT_COLUMNS, "")
        cells.update(status="completed", answer="a", prompt_tokens=str(p), model=model,
                     completion_tokens=str(c), total_tokens=str(p + c), cached_tokens="0",
                     reasoning_tokens="0", cost_usd=cost, attempts="1", latency_s="1.0",
                     service_tier=tier)  # fmt: skip
        out.append([q, *cells.values()])
    return write_csv(path, ["question", *RESULT_COLUMNS], out)


def genai_usd(p, c, context=None):
    counts = GenaiUsage(input_tokens=p, output_tokens=c)
    price = calc_price(counts, "gpt-5-mini", provider_id="openai", price_context=context)
    return price.total_price


def test_report_shows_cost_by_tier_and_at_standard_prices(tmp_path, api):
    batch = genai_usd(1000, 500, {"processing": "batch"})
    flex = genai_usd(2000, 100, {"service_tier": "flex"})
    default = genai_usd(300, 300)
    sheet = answers_file(
        tmp_path / "a.csv",
        [
            ("q1", "gpt-5-mini", "batch", 1000, 500, f"{batch:f}"),
            ("q2", "gpt-5-mini", "flex", 2000, 100, f"{flex:f}"),
            ("q3", "gpt-5-mini", "default", 300, 300, f"{default:f}"),
        ],
    )
    run = askbatch(["report", str(sheet)], base_env(tmp_path, api), sheet)
    assert run.code == 0, run.stderr
    standard = genai_usd(1000, 500) + genai_usd(2000, 100) + default
    paid = batch + flex + default
    assert standard > paid
    assert (
        f"cost by tier: batch {usd(batch)} (1 row), flex {usd(flex)} (1 row), standard "
        f"{usd(default)} (1 row); at standard prices {usd(standard)}, saved {usd(standard - paid)}"
    ) in run.stdout, run.stdout
    html = tmp_path / "r.html"
    run = askbatch(["report", str(sheet), "--html", str(html)], base_env(tmp_path, api), sheet)
    assert run.code == 0 and "cost by tier: batch" in html.read_text()


def test_a_file_all_at_standard_prices_has_no_tier_line(tmp_path, api):
    cost = f"{genai_usd(10, 10):f}"
    sheet = answers_file(tmp_path / "a.csv", [("q", "gpt-5-mini", "default", 10, 10, cost)])
    run = askbatch(["report", str(sheet)], base_env(tmp_path, api), sheet)
    assert run.code == 0 and "cost by tier" not in run.stdout and "list price" not in run.stdout


def test_gateway_rows_are_named_in_the_summary(tmp_path, api):
    cost = f"{genai_usd(10, 10):f}"
    sheet = answers_file(
        tmp_path / "a.csv",
        [("q", "gpt-5-mini", "default", 10, 10, cost), ("r", "gpt-5-mini", "", 5, 5, cost)],
    )
    gw = "https://llm-gateway.example.com/v1"
    run = askbatch(["report", str(sheet), "--base-url", gw], base_env(tmp_path, api), sheet)
    assert run.code == 0, run.stderr
    assert "2 rows priced at the provider's list price through llm-gateway.example.com" in (
        run.stdout
    ), run.stdout
    # A server on this machine or a private network is no gateway.
    for url in ("http://127.0.0.1:8000/v1", "http://10.0.0.7/v1", "http://box.local/v1"):
        run = askbatch(["report", str(sheet), "--base-url", url], base_env(tmp_path, api), sheet)
        assert run.code == 0 and "list price" not in run.stdout, (url, run.stdout)


@pytest.mark.parametrize(("flags", "code"), [(["--service-tier", "flex"], 0), ([], 3)])
def test_the_cap_holds_at_the_tier_the_job_asks_for(tmp_path, api, flags, code):
    """A 100,000-token answer held at gpt-5-mini's output price: $0.10 at flex prices fits a
    $0.15 cap, $0.20 at standard prices does not (the row is not sent, exit 3)."""
    output = calc_price(GenaiUsage(output_tokens=100_000), "gpt-5-mini", provider_id="openai")
    assert output.total_price > Decimal("0.15") > output.total_price / 2  # the premise
    sheet = write_csv(tmp_path / "w.csv", ["question"], [["Hi"]])
    out = tmp_path / "o.csv"
    args = ["run", str(sheet), "-o", str(out), "--model", "gpt-5-mini", "--max-cost", "0.15"]
    args += ["--answer-tokens", "100000", "--prices", gateway_prices(tmp_path, api), *flags]
    run = askbatch(args, base_env(tmp_path, api), out)
    assert run.code == code, run.stderr
    (row,) = run.rows()
    assert row["status"] == ("completed" if code == 0 else "skipped")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--batch", "--provider", "assistants"],
            "--batch works with --provider responses or chat",
        ),
        (["--batch", "--provider", "local"], "--batch works with --provider responses or chat"),
        (["--batch", "--service-tier", "flex"], "--service-tier flex is for synchronous runs"),
        (["--service-tier", "turbo"], "unknown service tier 'turbo'"),
    ],
)
def test_bad_tier_flags_exit_2_with_one_message(tmp_path, api, flags, message):
    sheet = write_csv(tmp_path / "w.csv", ["question"], [["Hi"]])
    out = tmp_path / "o.csv"
    run = askbatch(["run", str(sheet), "-o", str(out), *flags], base_env(tmp_path, api), out)
    assert run.code == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not out.exists()
    assert sum(api.stats()["requests"].values()) == 0
