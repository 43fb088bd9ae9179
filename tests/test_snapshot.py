"""The live facts of a job (jobs/snapshot.py) and what the store counts for them: cost in
nano-dollars, unpriced rows and retries, exact under first-writer-wins saves and drops, on a
real redis-server and a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

import pytest

from jobs import snapshot
from tests.jobtools import backend_store, fresh_db, new_job
from worker.models import COMPLETED, FAILED, SKIPPED, JobSpec, Result, Usage
from worker.pricing import nano
from worker.store import LocalStore, RedisStore


@pytest.fixture(params=["redis", "sqlite"])
def store(request, tmp_path):
    return backend_store(request, tmp_path, 12)


def _job(store, total=6) -> JobSpec:
    return new_job(store, total)


def _row(i, status=COMPLETED, cost="0.000123", attempts=1, tokens=10) -> Result:
    return Result(
        index=i,
        status=status,
        usage=Usage(tokens, tokens, 2 * tokens),
        attempts=attempts,
        cost_usd=None if cost is None else Decimal(cost),
    )


def test_cost_and_retries_are_counted_once_and_taken_back_on_drop(store):
    spec = _job(store)
    job = spec.job_id
    # 1E-10 dollars is a tenth of a nano-dollar: the ledger rounds each row up to 1.
    assert store.save(job, _row(0, cost="0.000123", attempts=3))
    assert store.finish(job, _row(1, FAILED, cost="1E-10", attempts=6))
    assert store.save(job, _row(2, cost=None, attempts=2))  # unpriced: tokens, no price
    assert store.save(job, Result(index=3, status=SKIPPED))  # never sent: no cost, no retry
    # A second delivery's save of the same rows is ignored, whatever it carries.
    assert not store.save(job, _row(0, cost="5", attempts=9))
    assert not store.finish(job, _row(1, COMPLETED, cost="5", attempts=9))

    p = store.progress(job)
    assert p.cost_nusd == 123_000 + 1 == nano(Decimal("0.000123")) + nano(Decimal("1E-10"))
    assert (p.unpriced, p.retries) == (1, 2 + 5 + 1)
    assert p.done == 4 and p.total_tokens == 60

    # Dropping the failed row takes back exactly what it added; saving it again adds anew.
    assert store.drop(job, [FAILED], [0, 1, 2, 3]) == 1
    p = store.progress(job)
    assert (p.cost_nusd, p.unpriced, p.retries) == (123_000, 1, 3)
    assert store.save(job, _row(1, cost="0.25", attempts=1))
    p = store.progress(job)
    assert (p.cost_nusd, p.unpriced, p.retries) == (123_000 + 250_000_000, 1, 3)
    assert store.drop(job, [COMPLETED], [2]) == 1
    assert store.progress(job).unpriced == 0


def test_large_costs_stay_exact(store):
    # Past 2**53 nano-dollars a double would round; Redis counts integers and SQLite too.
    spec = _job(store, total=2)
    big = "12345678.123456789"
    assert store.save(spec.job_id, _row(0, cost=big))
    assert store.save(spec.job_id, _row(1, FAILED, cost=big))
    assert store.progress(spec.job_id).cost_nusd == 2 * 12345678123456789
    assert store.drop(spec.job_id, [FAILED], [1]) == 1
    assert store.progress(spec.job_id).cost_nusd == 12345678123456789


def test_an_older_job_file_gets_its_tallies_from_the_rows(tmp_path):
    """A SQLite job written before the cost columns existed is read with them filled."""
    store = LocalStore(tmp_path)
    spec = _job(store, total=3)
    path = store.path(spec.job_id)
    store._dbs.pop(spec.job_id).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE results")  # and its triggers
        db.execute("DROP TABLE tally")
        db.execute(
            "CREATE TABLE results (idx INTEGER PRIMARY KEY, status TEXT,"
            " prompt INTEGER, completion INTEGER, total INTEGER, json TEXT NOT NULL)"
        )
        for r in (_row(0, attempts=4), _row(1, cost=None)):
            u = r.usage
            db.execute(
                "INSERT INTO results VALUES (?,?,?,?,?,?)",
                (
                    r.index,
                    r.status,
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.total_tokens,
                    json.dumps(r.to_json()),
                ),
            )
    p = LocalStore(tmp_path).progress(spec.job_id)
    assert (p.done, p.cost_nusd, p.unpriced, p.retries) == (2, 123_000, 1, 3)


def test_sampler_measures_the_recent_rate():
    now = [0.0]
    s = snapshot.Sampler(window_s=10, clock=lambda: now[0])
    s.add(100)  # a job watched half-way: rows done before are not credited
    assert s.rows_per_s() is None
    for _ in range(20):  # 2 rows/s for 20 s
        now[0] += 1
        s.add(s.samples[-1][1] + 2)
    assert s.rows_per_s() == pytest.approx(2.0)
    for _ in range(10):  # then 5 rows/s: the window forgets the slower past
        now[0] += 1
        s.add(s.samples[-1][1] + 5)
    assert s.rows_per_s() == pytest.approx(5.0, rel=0.15)
    s.add(3)  # rows dropped to be asked again: measuring starts over
    assert s.rows_per_s() is None


def test_snapshot_of_a_job(store):
    spec = _job(store, total=4)
    job = spec.job_id
    now = [0.0]
    sampler = snapshot.Sampler(clock=lambda: now[0])
    first = snapshot.snapshot(store, job, sampler)
    assert (first.done, first.total, first.rows_per_s, first.eta_s) == (0, 4, None, None)
    store.save(job, _row(0, attempts=2))
    store.save(job, _row(1, FAILED, cost="0.5"))
    now[0] = 2.0
    snap = snapshot.snapshot(store, job, sampler)
    assert (snap.done, snap.completed, snap.failures, snap.retries) == (2, 1, 1, 1)
    assert snap.cost_usd == Decimal("0.500123")
    assert snap.rows_per_s == pytest.approx(1.0) and snap.eta_s == pytest.approx(2.0)
    assert snap.to_json()["cost_usd"] == "0.500123000"
    # Nobody runs the job: an embedded one is not running; a distributed one waits for workers.
    expected = snapshot.NOT_RUNNING if isinstance(store, LocalStore) else snapshot.WAITING
    assert snap.state == expected
    store.save(job, _row(2))
    store.save(job, _row(3))
    done = snapshot.snapshot(store, job, sampler)
    assert done.state == snapshot.FINISHED and done.over and done.eta_s == 0.0
    with pytest.raises(KeyError):
        snapshot.snapshot(store, "20990101-000000-000000")


def test_an_older_redis_job_gets_its_tallies_from_the_rows(redis_server):
    """A Redis job created before save.lua counted cost and retries is added up from its rows."""
    store = RedisStore(fresh_db(redis_server.url, 12))
    spec = _job(store, total=3)
    store.save(spec.job_id, _row(0, attempts=4))
    store.save(spec.job_id, _row(1, cost=None))
    stats = f"askbatch:{spec.job_id}:stats"
    store.redis.hdel(stats, "tallied", "cost_nusd", "unpriced", "retries")
    p = store.progress(spec.job_id)
    assert (p.done, p.cost_nusd, p.unpriced, p.retries) == (2, 123_000, 1, 3)


def test_the_tier_comes_from_the_job_spec():
    """The tier work's JobSpec fields (read by name, so either branch can land first)."""

    class Spec:
        service_tier, batch = "flex", False

    assert snapshot.tier_of(Spec()) == "flex"
    Spec.batch = True
    assert snapshot.tier_of(Spec()) == "batch"
    assert snapshot.tier_of(JobSpec(job_id="j", provider="chat", model="m")) == ""
