"""The shared rate budget (worker/limits/rate/): its arithmetic in memory and in Redis, what the
server's headers do to it, and one job on two real workers against the double's rpm limit."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tests.conftest import askbatch, base_env, start_workers, write_csv
from tests.double.fixture import start_double
from worker.errors import ConfigError
from worker.limits.rate import (
    Booking,
    Budget,
    MemoryBucket,
    RedisBucket,
    State,
    book,
    duration_s,
    low_remaining_pause,
    parse_limits,
    remember_headers,
    request_texts,
    shape,
    slow,
)


@pytest.fixture(params=["memory", "redis"])
def bucket(request, redis_server):
    if request.param == "memory":
        yield MemoryBucket()
        return
    client = redis_server.client()
    key = f"askbatch:test-budget:{time.monotonic_ns()}"
    yield RedisBucket(client, key)
    client.delete(key)


def test_requests_are_paced_after_a_small_burst(bucket):
    burst, rate = shape(600, 1.0)
    assert (burst, rate) == (6.0, 588 / 60)  # 98 % of the limit, so windows never overflow
    waits = [bucket.book((600, 0), (1, 0), 10.0)[0] for _ in range(10)]
    assert waits[:6] == pytest.approx([0.0] * 6, abs=0.01)
    # then one every 60/588 s, each booked place further ahead
    for i, wait in enumerate(waits[6:], start=1):
        assert wait == pytest.approx(i / rate, abs=0.02)


def test_a_booking_beyond_the_horizon_is_refused_and_says_when_to_come_back(bucket):
    for _ in range(6):
        bucket.book((600, 0), (1, 0), 0.5)[0]
    waits = [bucket.book((600, 0), (1, 0), 0.5)[0] for _ in range(10)]
    booked = [w for w in waits if w >= 0]
    refused = [w for w in waits if w < 0]
    assert len(booked) == 4  # places within 0.5 s: 0.102, 0.204, 0.306, 0.408; 0.51 is past
    assert refused and all(-0.1 < w < 0 for w in refused)


def test_tokens_are_reserved_then_settled(bucket):
    _, rate = shape(6000, 1.0)  # burst 60, 98 tokens/s
    assert bucket.book((0, 6000), (0, 500), 60.0)[0] == pytest.approx(0, abs=0.01)
    # the 500 booked push the next request back by 500/98 s less the burst's 60
    second = bucket.book((0, 6000), (0, 40), 60.0)[0]
    assert second == pytest.approx((500 + 40 - 60) / rate, abs=0.05)
    # the first really used 100 and the second was never sent: 440 come back, and the third
    # waits only for what was really used
    bucket.settle(6000, -400 - 40)
    third = bucket.book((0, 6000), (0, 40), 60.0)[0]
    assert third == pytest.approx((100 + 40 - 60) / rate, abs=0.05)


def test_a_request_must_fit_both_limits(bucket):
    assert bucket.book((600, 6000), (1, 1000), 60.0)[0] == pytest.approx(0, abs=0.01)
    _, tok_rate = shape(6000, 1.0)
    # requests would allow it now; the 1000 tokens of the first do not
    assert bucket.book((600, 6000), (1, 10), 60.0)[0] == pytest.approx(
        (1000 + 10 - 60) / tok_rate, abs=0.05
    )


def test_a_429_pauses_everyone_and_lowers_the_rate_once_per_run_of_them(bucket):
    bucket.slow(1.5, limited=True)
    bucket.slow(0.2, limited=True)  # the same run of 429s: no second cut, the pause stays
    assert bucket.pause_left() == pytest.approx(1.5, abs=0.05)
    assert bucket.book((600, 0), (1, 0), 10.0)[0] == pytest.approx(1.5, abs=0.05)
    # after the pause and its burst, places come at 70 % of the rate
    for _ in range(5):
        bucket.book((600, 0), (1, 0), 10.0)[0]
    _, rate = shape(600, 0.7)
    assert bucket.book((600, 0), (1, 0), 10.0)[0] == pytest.approx(1.5 + 1 / rate, abs=0.05)


def test_the_rate_recovers_when_429s_stop():
    state = State()
    slow(state, 100.0, 0.0, limited=True)
    assert state.factor == pytest.approx(0.7)
    slow(state, 100.5, 0.0, limited=True)  # within a second: the same run
    assert state.factor == pytest.approx(0.7)
    slow(state, 102.0, 0.0, limited=True)  # a new run: 0.74 recovered, then cut again
    assert state.factor == pytest.approx(0.74 * 0.7)
    # 20 s later the cut is gone; bookings space out at the full rate again
    state.tat = (0.0, 0.0)
    assert book(state, 200.0, (600, 0), (1, 0), 10.0) == (0, 0)
    _, rate = shape(600, 1.0)
    assert state.tat[0] == pytest.approx(200.0 + 1 / rate)


def test_server_headers_running_low_pace_what_is_left():
    headers = {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "90000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert low_remaining_pause(headers) == pytest.approx(0.5)  # 3 left in 2 s
    headers["x-ratelimit-remaining-requests"] = "900"
    assert low_remaining_pause(headers) == 0  # plenty left: no pause
    assert duration_s("6m0s") == 360 and duration_s("20ms") == 0.02 and duration_s("1.5") == 1.5


def test_a_response_with_low_remaining_slows_the_shared_budget(bucket):
    budget = Budget(bucket, 0, 0, "gpt-5-mini", 100)
    response = SimpleNamespace(
        headers={
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "1",
            "x-ratelimit-reset-requests": "2s",
        }
    )
    remember_headers(response)  # what the HTTP client's hook does for every response
    budget.done(Booking(0), SimpleNamespace(usage=None))
    assert bucket.pause_left() == pytest.approx(1.0, abs=0.05)
    other = Budget(bucket, 0, 0, "gpt-5-mini", 100)  # another worker's view of it
    t0 = time.monotonic()
    other.acquire({}, deadline=t0 + 30)
    assert time.monotonic() - t0 >= 0.9


def test_settlement_uses_the_reported_usage_and_every_worker_learns_the_answer_length(bucket):
    budget = Budget(bucket, 0, 6000, "gpt-5-mini", 2000)
    request = {"messages": [{"role": "user", "content": "What is two plus two?"}]}
    first = budget.acquire(request, time.monotonic() + 5)
    assert 2000 < first.tokens < 2030  # the question counted locally, plus the answer expected
    usage = SimpleNamespace(total_tokens=30, completion_tokens=12)
    budget.done(first, SimpleNamespace(usage=usage))
    other = Budget(bucket, 0, 6000, "gpt-5-mini", 2000)  # another worker, no answer of its own
    assert 12 < other.acquire(request, time.monotonic() + 5).tokens < 40


def test_limits_parse_per_model():
    assert parse_limits("600") == {"": 600}
    assert parse_limits("600, gpt-4o=100") == {"": 600, "gpt-4o": 100}
    assert parse_limits("") == {}
    with pytest.raises(ConfigError, match="--rpm"):
        parse_limits("fast")


def test_request_texts_cover_every_provider_shape():
    assert request_texts(
        {
            "instructions": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "input": [{"type": "function_call_output", "output": "42"}],
            "thread": {"messages": [{"role": "user", "content": "Why?"}]},
        }
    ) == ["Be brief.", "Hi", "42", "Why?"]


def test_two_workers_share_one_budget_against_the_servers_limit(redis_server, tmp_path):
    """130 questions against a server allowing 480 a minute, counted over 15 s (120 in any
    15 s), and --rpm 450: the job takes about 17 s. Without one shared budget the two workers
    (8 threads each) would each pace at 450 a minute, 220 in 15 s, and get 429s."""
    with start_double(rpm=480, rate_period=15) as double:
        env = base_env(tmp_path, double)
        env["ASKBATCH_BROKER_URL"] = redis_server.url
        workers = start_workers(env, 2, tmp_path, concurrency=8)
        try:
            sheet = write_csv(
                tmp_path / "q.csv", ["question"], [[f"Question {i}?"] for i in range(130)]
            )
            out = tmp_path / "a.csv"
            run = askbatch(
                ["run", str(sheet), "-o", str(out), "--provider", "chat", "--rpm", "450"],
                env,
                out,
                timeout=240,
            )
            stats = double.stats()
        finally:
            workers.stop()
    assert run.code == 0, run.stderr
    assert [r["status"] for r in run.rows()] == ["completed"] * 130
    assert stats["status_429"] == 0
    assert stats["requests"]["chat"] == 130  # one request per question, none retried
