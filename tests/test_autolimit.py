"""The limit learned from x-ratelimit-* headers and the rows in flight that follow it
(worker/limits/rate/): header parsing, the probe, learned pacing, flags that win, the gate's
share, and jobs on real processes against the double's limit enforced per second."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from tests import test_budget
from tests.conftest import askbatch, base_env, start_workers, write_csv
from tests.double.fixture import start_double
from worker.limits.rate import Booking, Budget, MemoryBucket, RedisBucket, duration_s
from worker.limits.rate.flight import FLOOR, HEADROOM, Flight
from worker.limits.rate.gcra import AUTO, LEARNED, LEARNED_SHARE, PLAIN, PROBE_WAIT_S, shape
from worker.limits.rate.headers import remember_headers, server_limits

# The same bucket on both backends, in memory and in Redis, as the budget's own tests use.
bucket = test_budget.bucket


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("59.999s", 59.999),
        ("1m", 60.0),
        ("2h", 7200.0),
        ("350us", 0.00035),
        ("500ns", 5e-7),
        (".5s", 0.5),
        ("17", 17.0),
        ("0.25", 0.25),
        (" 6m0s ", 360.0),
    ],
)
def test_every_reset_format_is_read(text, seconds):
    assert duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "6m0", "ms", "-1s", "-3"])
def test_a_reset_that_is_no_duration_is_none(text):
    assert duration_s(text) is None


def test_the_limits_the_headers_say():
    openai = {
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-remaining-requests": "4999",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-limit-tokens": "4000000",
        "x-ratelimit-remaining-tokens": "3999980",
        "x-ratelimit-reset-tokens": "0s",
    }
    assert server_limits(openai) == (5000, 4_000_000)
    # a project capped below the key: the lower of the two
    project = {**openai, "x-ratelimit-limit-project-tokens": "150000"}
    assert server_limits(project) == (5000, 150_000)
    assert server_limits({"x-ratelimit-limit-tokens": "30000"}) == (0, 30_000)
    assert server_limits({"x-ratelimit-limit-requests": "lots"}) is None
    assert server_limits({"content-type": "application/json"}) is None
    assert server_limits(None) is None


def _answer(budget, headers, booking=None):
    remember_headers(SimpleNamespace(headers=headers))  # what the HTTP client's hook does
    budget.done(booking or Booking(0.0, at=time.monotonic()), SimpleNamespace(usage=None))


def test_before_any_header_one_probe_goes_alone_then_the_learned_limit_paces(bucket):
    budget = Budget(bucket, AUTO, AUTO, "gpt-5-mini", 100)
    assert bucket.book((AUTO, AUTO), (1, 0), 0.5)[0] == 0  # the probe
    # everyone else is told to come back soon, and nothing is booked
    assert bucket.book((AUTO, AUTO), (1, 0), 0.5)[0] == pytest.approx(-PROBE_WAIT_S)
    _answer(budget, {"x-ratelimit-limit-requests": "1200", "x-ratelimit-reset-requests": "1s"})
    assert budget.view.seen == LEARNED and budget.limits() == (1200, 0)
    burst, rate = shape(1200, 1.0, learned=True)
    assert (burst, rate) == (1.0, 1200 * LEARNED_SHARE / 60)  # 50 ms worth at once, then 95 %
    waits = [bucket.book((AUTO, AUTO), (1, 0), 10.0)[0] for _ in range(5)]
    assert waits[0] == pytest.approx(0, abs=0.01)
    for i, wait in enumerate(waits[1:], start=1):
        assert wait == pytest.approx(i / rate, abs=0.02)
    assert budget.allowed_rps() == pytest.approx(rate)


def test_another_worker_paces_by_what_the_first_learned(redis_server):
    key = f"askbatch:test-autolimit:{time.monotonic_ns()}"
    first = Budget(RedisBucket(redis_server.client(), key), AUTO, AUTO, "m", 100)
    first.acquire({}, time.monotonic() + 5)
    _answer(first, {"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "90000"})
    joined = Budget(RedisBucket(redis_server.client(), key), AUTO, AUTO, "m", 100)
    joined.acquire({"messages": [{"role": "user", "content": "Hi"}]}, time.monotonic() + 5)
    assert joined.limits() == (600, 90_000)
    assert joined.view.seen == LEARNED


def test_a_server_without_headers_is_not_paced(bucket):
    budget = Budget(bucket, AUTO, AUTO, "local", 100)
    budget.acquire({}, time.monotonic() + 5)
    _answer(budget, {"content-type": "application/json"})
    assert budget.view.seen == PLAIN and budget.allowed_rps() is None
    t0 = time.monotonic()
    for _ in range(200):  # no probe, no pacing: as before there were headers to learn
        budget.acquire({}, time.monotonic() + 5)
    assert time.monotonic() - t0 < 1.0


def test_a_probe_that_failed_without_an_answer_lets_the_next_one_go(bucket):
    budget = Budget(bucket, AUTO, AUTO, "m", 100)
    booking = budget.acquire({}, time.monotonic() + 5)
    assert bucket.book((AUTO, AUTO), (1, 0), 0.5)[0] < 0
    budget.failed(booking, ConnectionError("refused"))
    assert bucket.book((AUTO, AUTO), (1, 0), 0.5)[0] == 0


def test_given_limits_win_over_learned_ones(bucket):
    budget = Budget(bucket, 60, AUTO, "m", 100)
    # a limit given: no probe, paced by it from the first request
    assert budget.acquire({}, time.monotonic() + 5).tokens == 0
    _answer(budget, {"x-ratelimit-limit-requests": "6000", "x-ratelimit-limit-tokens": "600000"})
    assert budget.limits() == (60, 600_000)  # --rpm 60 holds; the tokens are learned
    off = Budget(MemoryBucket(), 0, 0, "m", 100)  # --rpm 0 --tpm 0: nothing learned
    _answer(off, {"x-ratelimit-limit-requests": "6000"})
    assert off.limits() == (0, 0) and off.allowed_rps() is None


class _Store:
    """A store's `pace` for one process, or for several (`others`)."""

    def __init__(self, others: int = 0) -> None:
        self.others = others
        self.reports: list[dict] = []

    def pace(self, job_id, proc, report, within_s):
        self.reports.append(report)
        return [report] * (1 + self.others)


def _flight_after(budget, store, rows: int, seconds: float, ceiling: int = 256) -> Flight:
    flight = Flight(store, "job", ceiling)
    for _ in range(rows):
        with flight.row(budget):
            budget.acquire({}, time.monotonic() + 30)  # one request per row, as chat sends
            time.sleep(seconds)
    flight.refresh()
    return flight


def test_the_share_in_flight_follows_rate_times_latency():
    bucket = MemoryBucket()
    budget = Budget(bucket, AUTO, AUTO, "m", 100)
    flight = Flight(_Store(), "job", 256)
    assert flight.limit == FLOOR  # nothing known yet
    with flight.row(budget):
        budget.acquire({}, time.monotonic() + 5)
        _answer(budget, {"x-ratelimit-limit-requests": "6000"})
    rate = 6000 * LEARNED_SHARE / 60
    flight = _flight_after(budget, _Store(), 3, 0.2)
    need = rate * flight.occupancy_s * HEADROOM + 1
    assert flight.limit == pytest.approx(need, abs=2)
    # two processes share the job's target
    two = _flight_after(budget, _Store(others=1), 3, 0.2)
    assert two.limit == pytest.approx((rate * two.occupancy_s * HEADROOM + 1) / 2, abs=2)
    # a 429 lowers the rate (to 70 %), and the share with it
    bucket.slow(0.0, limited=True)
    budget.acquire({}, time.monotonic() + 5)
    flight.refresh()
    assert flight.limit <= 0.7 * (rate * flight.occupancy_s * HEADROOM) + 3
    assert flight.limit < need * 0.85


def test_a_plain_server_gets_every_thread():
    budget = Budget(MemoryBucket(), AUTO, AUTO, "m", 100)
    flight = Flight(_Store(), "job", 64)
    with flight.row(budget):
        budget.acquire({}, time.monotonic() + 5)
        _answer(budget, {})
    flight.refresh()
    assert flight.limit == 64


def _run(args, env, out, timeout=240):
    return askbatch(["run", *args, "-o", str(out), "--provider", "chat"], env, out, timeout)


def test_an_embedded_job_learns_the_limit_and_says_so(tmp_path):
    """600 RPM enforced per second (10 a second) and no flag: paced just under it."""
    with start_double(rpm=600, rate_period=1, latency=0.3) as double:
        env = base_env(tmp_path, double)
        sheet = write_csv(tmp_path / "q.csv", ["question"], [[f"Q {i}?"] for i in range(150)])
        t0 = time.monotonic()
        run = _run([str(sheet)], env, tmp_path / "a.csv")
        elapsed = time.monotonic() - t0
        stats = double.stats()
    assert run.code == 0, run.stderr
    assert stats["status_429"] <= 1  # under 1 % of 150
    assert 150 / 10 <= elapsed < 150 / 10 / 0.8 + 10  # at about 95 % of 10 a second
    assert "limit 600 RPM (learned)" in run.stderr
    assert "bound by the account's limit (600 RPM (learned))" in run.stderr


def test_a_given_rpm_wins_over_the_learned_limit(tmp_path):
    with start_double(rpm=6000, rate_period=1) as double:
        env = base_env(tmp_path, double)
        sheet = write_csv(tmp_path / "q.csv", ["question"], [[f"Q {i}?"] for i in range(12)])
        t0 = time.monotonic()
        run = _run([str(sheet), "--rpm", "60"], env, tmp_path / "a.csv")
        elapsed = time.monotonic() - t0
    assert run.code == 0, run.stderr
    assert elapsed >= 11 * 60 / 58 - 0.5  # one a second (--rpm 60), not 100 a second
    assert "limit 60 RPM (given)" in run.stderr


def test_two_workers_share_the_back_off(redis_server, tmp_path):
    """1,200 RPM enforced per second; a burst of random 429s mid-run lowers the share in
    flight of both worker processes, and it comes back."""
    with start_double(rpm=1200, rate_period=1, latency=0.5) as double:
        env = base_env(tmp_path, double)
        env["ASKBATCH_BROKER_URL"] = redis_server.url
        workers = start_workers(env, 2, tmp_path, concurrency=32)
        client = redis_server.client()
        seen: dict[str, list[tuple[float, int]]] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.25):
                for key in client.scan_iter(match="askbatch:*:pace"):
                    for proc, raw in client.hgetall(key).items():
                        report = json.loads(raw)
                        seen.setdefault(proc, []).append((time.monotonic(), report["limit"]))

        def storm() -> None:
            time.sleep(8)
            double.configure(rate_429=0.3)
            time.sleep(2)
            double.configure(rate_429=0.0)

        threads = [threading.Thread(target=f, daemon=True) for f in (watch, storm)]
        try:
            for t in threads:
                t.start()
            sheet = write_csv(tmp_path / "q.csv", ["question"], [[f"Q {i}?"] for i in range(400)])
            run = _run([str(sheet)], env, tmp_path / "a.csv", timeout=300)
            stats = double.stats()
        finally:
            stop.set()
            workers.stop()
    assert run.code == 0, run.stderr
    assert [r["status"] for r in run.rows()] == ["completed"] * 400
    assert len(seen) == 2  # both workers reported their share
    for limits in seen.values():
        before = max(n for _, n in limits[: len(limits) // 3])
        low = min(n for _, n in limits[len(limits) // 3 :])
        assert low < before, limits  # both backed off, not only the one that got a 429
    assert stats["status_429"] < 100  # the injected ones and their retries, no storm after


def test_two_workers_against_1200_rpm_get_under_1_percent_429s(redis_server, tmp_path):
    with start_double(rpm=1200, rate_period=1, latency=0.5) as double:
        env = base_env(tmp_path, double)
        env["ASKBATCH_BROKER_URL"] = redis_server.url
        workers = start_workers(env, 2, tmp_path, concurrency=64)
        try:
            sheet = write_csv(tmp_path / "q.csv", ["question"], [[f"Q {i}?"] for i in range(400)])
            run = _run([str(sheet)], env, tmp_path / "a.csv", timeout=300)
            stats = double.stats()
        finally:
            workers.stop()
    assert run.code == 0, run.stderr
    assert stats["status_429"] <= 0.01 * stats["requests"]["chat"]
    assert "1,200 RPM (learned)" in run.stderr


def test_a_worker_joining_mid_run_sends_no_burst(redis_server, tmp_path):
    """1,200 RPM enforced per second: a second worker started while the first runs at the
    learned limit paces by the shared budget from its first request (429s stay under 1 %)."""
    with start_double(rpm=1200, rate_period=1, latency=0.5) as double:
        env = base_env(tmp_path, double)
        env["ASKBATCH_BROKER_URL"] = redis_server.url
        first = start_workers(env, 1, tmp_path, concurrency=64)
        late: list = []

        def join() -> None:
            time.sleep(6)  # the first worker has learned the limit and runs at it
            late.append(start_workers(env, 1, tmp_path, concurrency=64, name="late"))

        joiner = threading.Thread(target=join, daemon=True)
        try:
            joiner.start()
            sheet = write_csv(tmp_path / "q.csv", ["question"], [[f"Q {i}?"] for i in range(400)])
            run = _run([str(sheet)], env, tmp_path / "a.csv", timeout=300)
            stats = double.stats()
            joiner.join(60)
            logs = "".join(w.log_text() for w in late)
        finally:
            first.stop()
            for workers in late:
                workers.stop()
    assert run.code == 0, run.stderr
    assert [r["status"] for r in run.rows()] == ["completed"] * 400
    assert late and "askbatch.answer" in logs, "the late worker answered rows too"
    assert stats["status_429"] <= 0.01 * stats["requests"]["chat"], stats
