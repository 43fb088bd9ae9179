"""End to end: per-row cost in the answers CSV, the summary at the end of a run, the
pre-flight estimate (no API call) and the spending cap in both modes (real CLI, real SDK over
HTTP to the API double, real redis-server and worker processes)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.double.expect import answer_for, count_tokens, usage_for
from worker import tokens
from worker.models import JobSpec
from worker.store import LocalStore, RedisStore

M = Decimal(1_000_000)


def gateway_prices(tmp_path, api, extra: str = "") -> str:
    """Bill the double's models at OpenAI's prices, as for a gateway in front of OpenAI."""
    path = tmp_path / "prices.toml"
    path.write_text(f'[base_urls]\n"{api.base_url}" = "openai"\n{extra}')
    return str(path)


def test_cost_per_row_and_the_summary(tmp_path, api):
    """gpt-5-mini at genai-prices' figures with cached and reasoning tokens; a house model
    from the price file; a model nobody prices is unpriced, never free."""
    from genai_prices import data_snapshot

    _, info = data_snapshot.get_snapshot().find_provider_model("gpt-5-mini", None, "openai", None)
    p = info.get_prices(datetime.now(tz=UTC))
    rows = [
        ["c1", "Explain fractions [[cached:4]] [[reasoning:30]]", ""],
        ["c2", "What is 7 x 6?", "house-model"],
        ["c3", "Tell me a joke", "nobody-prices-this"],
    ]
    sheet = write_csv(tmp_path / "s.csv", ["id", "question", "model"], rows)
    prices = gateway_prices(tmp_path, api, '[models."house-model"]\ninput = 3\noutput = 5\n')
    out = tmp_path / "o.csv"
    env = base_env(tmp_path, api)
    run = askbatch(
        ["run", str(sheet), "-o", str(out), "--model", "gpt-5-mini", "--prices", prices], env, out
    )
    assert run.code == 0, run.stderr
    got = {r["id"]: r for r in run.rows()}
    # c1: prompt = words + 3, 4 of them cached; completion = answer words + 30 reasoning.
    prompt, completion = usage_for([rows[0][1]], answer_for(rows[0][1], 1), 30)
    c1 = ((prompt - 4) * p.input_mtok + 4 * p.cache_read_mtok + completion * p.output_mtok) / M
    assert (int(got["c1"]["cached_tokens"]), int(got["c1"]["reasoning_tokens"])) == (4, 30)
    assert Decimal(got["c1"]["cost_usd"]) == c1.quantize(Decimal("1e-9"))
    prompt, completion = usage_for([rows[1][1]], answer_for(rows[1][1], 1))
    c2 = (prompt * 3 + completion * 5) / M
    assert Decimal(got["c2"]["cost_usd"]) == c2
    assert got["c3"]["cost_usd"] == "" and got["c3"]["status"] == "completed"
    total = f"${c1 + c2:,.6f}"
    assert f"cost: {total} + 1 row unpriced" in run.stderr, run.stderr
    assert "unpriced (nobody-prices-this)" in run.stderr
    for line in ("3 of 3 rows: 3 completed", "latency: p50", "retries: 0", "costliest rows:"):
        assert line in run.stderr, (line, run.stderr)


def questions(n: int) -> list[list[str]]:
    # Every answer is "[turn 1] answer: qI b c d e": 8 words, so 8 completion tokens.
    return [[f"q{i} b c d e"] for i in range(n)]


CAP_PRICES = "[models.capped]\ninput = 0\noutput = 1000\n"  # $0.001 per answer token


def check_cap_run(run, api, n: int) -> None:
    """20 rows of $0.008 each (8 answer tokens at $0.001), cap $0.05, each row holding its
    exact cost: exactly 6 rows fit (6 x 0.008 = 0.048; a 7th would make 0.056)."""
    assert run.code == 3, run.stderr
    got = run.rows()
    done = [r for r in got if r["status"] == "completed"]
    skipped = [r for r in got if r["status"] == "skipped"]
    assert (len(done), len(skipped)) == (6, n - 6), [r["status"] for r in got]
    assert all(Decimal(r["cost_usd"]) == Decimal("0.008") for r in done)
    assert all("spending cap of $0.05" in r["error"] and r["cost_usd"] == "" for r in skipped)
    assert sum(api.stats()["questions"].values()) == 6, "no skipped row reached the API"
    assert "spending cap of $0.05 stopped the job" in run.stderr
    assert "cost: $0.048000" in run.stderr
    assert API_KEY not in run.stderr + run.output.read_text(encoding="utf-8-sig")


def test_cap_stops_an_embedded_job_at_the_right_row(tmp_path, api):
    n = 20
    sheet = write_csv(tmp_path / "s.csv", ["question"], questions(n))
    prices = tmp_path / "p.toml"
    prices.write_text(CAP_PRICES)
    out = tmp_path / "o.csv"
    args = ["run", str(sheet), "-o", str(out), "--model", "capped", "--prices", str(prices)]
    args += ["--max-cost", "0.05", "--answer-tokens", "8", "--concurrency", "4"]
    check_cap_run(askbatch(args, base_env(tmp_path, api), out), api, n)


def test_cap_stops_a_distributed_job_across_workers(tmp_path, api, workers, redis_server):
    """Two workers, 16 runs in flight: the Redis ledger still lets exactly 6 rows start."""
    n = 40
    sheet = write_csv(tmp_path / "s.csv", ["question"], questions(n))
    prices = tmp_path / "p.toml"  # read by `run` only: the workers get it with the job
    prices.write_text(CAP_PRICES)
    env = base_env(tmp_path, api)
    env["ASKBATCH_BROKER_URL"] = redis_server.url
    out = tmp_path / "o.csv"
    args = ["run", str(sheet), "-o", str(out), "--model", "capped", "--prices", str(prices)]
    args += ["--max-cost", "0.05", "--answer-tokens", "8"]
    check_cap_run(askbatch(args, env, out), api, n)


def test_cap_needs_a_price_for_the_job_model(tmp_path, api):
    sheet = write_csv(tmp_path / "s.csv", ["question"], questions(2))
    out = tmp_path / "o.csv"
    prices = gateway_prices(tmp_path, api)
    args = ["run", str(sheet), "-o", str(out), "--model", "nobody-prices-this"]
    run = askbatch([*args, "--prices", prices, "--max-cost", "1"], base_env(tmp_path, api), out)
    assert run.code == 2 and "--max-cost needs a price" in run.stderr, run.stderr
    assert not out.exists() and sum(api.stats()["requests"].values()) == 0
    bad = askbatch([*args, "--max-cost", "free"], base_env(tmp_path, api), out)
    assert bad.code == 2 and "ASKBATCH_MAX_COST" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("command", ["estimate", "run --dry-run"])
def test_estimate_counts_locally_and_calls_no_api(tmp_path, api, command):
    rows = [
        ["", "다음의 방정식을 풀어 주세요: '3x + 11 = 14'"],
        ["t", "Solve 2x = 6."],
        ["t", "And 3x = 12?"],
        ["", "   "],
    ]
    sheet = write_csv(tmp_path / "s.csv", ["thread", "question"], rows)
    prices = tmp_path / "p.toml"
    prices.write_text('[models."gpt-5-mini"]\ninput = 1\noutput = 10\n')
    out = tmp_path / "s.answers.csv"
    args = [*command.split(), str(sheet), "--model", "gpt-5-mini", "--prices", str(prices)]
    args += ["--instructions", "Be brief.", "--answer-tokens", "100-400", "--max-cost", "0.005"]
    run = askbatch(args, base_env(tmp_path, api), out)
    assert run.code == 0, run.stderr
    assert sum(api.stats()["requests"].values()) == 0, "the estimate sent nothing"
    assert not out.exists()
    # By hand: every request holds the instructions and the question (+3 tokens per message,
    # +3 for the reply); the thread's second turn also resends its first question and answer.
    q = [tokens.count([r[1]], "gpt-5-mini")[0] + 3 for r in rows[:3]]
    fixed = tokens.count(["Be brief."], "gpt-5-mini")[0] + 3 + 3
    for lo_hi, answer in (("low", 100), ("high", 400)):
        prompt = 3 * fixed + sum(q) + (q[1] + answer + 3)
        cost = (prompt * 1 + 3 * answer * 10) / M
        assert f"${cost:,.6f}" in run.stdout, (lo_hi, cost, run.stdout)
    assert "3 rows to ask (1 blank, not sent)" in run.stdout
    assert "o200k_base" in run.stdout and "no API was called" in run.stdout
    assert "spending cap $0.005000: the cap may stop the job" in run.stdout
    assert count_tokens(rows[0][1]) != q[0] - 3  # counted by a real tokenizer, not by words


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_ledger_never_lets_the_budget_be_overspent(kind, tmp_path, request):
    """64 threads race to hold $0.003 each under a $0.1 cap: exactly 33 holds succeed, then
    settling at a lower real cost frees room for more."""
    if kind == "redis":
        store = RedisStore(request.getfixturevalue("redis_server").url)
    else:
        store = LocalStore(tmp_path)
    spec = JobSpec(job_id=f"ledger-{kind}-{tmp_path.name}", provider="chat", model="m", total=1)
    store.create_job(spec)
    cap, hold = 100_000_000, 3_000_000  # nano-dollars
    wins: list[bool] = []
    barrier = threading.Barrier(64)

    def grab(row: int) -> None:
        barrier.wait()
        if store.reserve(spec.job_id, row, hold, cap):
            wins.append(row)

    threads = [threading.Thread(target=grab, args=(row,)) for row in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 33  # 33 x 3,000,000 = 99,000,000 <= 100,000,000 < 34 x
    assert store.spending(spec.job_id) == (0, 99_000_000)
    for row in wins:
        store.settle(spec.job_id, row, 1_000_000)  # each really cost a third of its hold
    assert store.spending(spec.job_id) == (33_000_000, 0)
    assert store.reserve(spec.job_id, 100, 67_000_000, cap)
    assert not store.reserve(spec.job_id, 101, 1, cap)

    # A row asked again (its first worker died holding it) replaces its hold, not adds to it:
    # the dead worker's hold does not eat into the cap for the rest of the job.
    assert store.reserve(spec.job_id, 100, 60_000_000, cap)
    assert store.spending(spec.job_id) == (33_000_000, 60_000_000)
    assert store.reserve(spec.job_id, 101, 7_000_000, cap)


def test_report_matches_the_run_summary(tmp_path, api):
    rows = [[f"r{i}", f"question {i} [[reasoning:{i}]]"] for i in range(5)]
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], rows)
    out = tmp_path / "o.csv"
    env = base_env(tmp_path, api)
    prices = gateway_prices(tmp_path, api)
    run = askbatch(["run", str(sheet), "-o", str(out), "--prices", prices], env, out)
    assert run.code == 0, run.stderr
    rep = askbatch(["report", str(out)], env, out)
    assert rep.code == 0, rep.stderr
    start = run.stderr.index("5 of 5 rows")
    block = run.stderr[start : run.stderr.index("\ntime:")]
    assert "cost: $" in block and block in rep.stdout, (block, rep.stdout)
