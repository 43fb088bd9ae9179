"""The store operations behind status, resume, --retry-failed and cancel, on both backends:
a real redis-server and a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from tests.conftest import ROOT
from tests.jobtools import backend_store, fresh_db, new_job
from worker.errors import JobBusy
from worker.limits.leases import lease_for
from worker.models import CANCELLED, COMPLETED, FAILED, JobSpec, Result, Usage
from worker.store import LocalStore, RedisStore


@pytest.fixture(params=["redis", "sqlite"])
def store(request, tmp_path):
    return backend_store(request, tmp_path, 11)


def _job(store, total=6) -> JobSpec:
    return new_job(store, total)


def _claim(store, job_id, index) -> bool:
    return store.begin(job_id, index, 60, first=False).claimed


def _result(i, status, tokens=10) -> Result:
    return Result(index=i, status=status, usage=Usage(tokens, tokens, 2 * tokens))


def test_missing_drop_and_counters(store):
    spec = _job(store)
    for i, status in [(0, COMPLETED), (1, FAILED), (2, COMPLETED), (4, CANCELLED)]:
        assert store.save(spec.job_id, _result(i, status))
    assert store.missing(spec.job_id, spec.total) == [3, 5]

    # Only rows still in one of the statuses go, whatever indices are given.
    dropped = store.drop(spec.job_id, (FAILED, CANCELLED), [0, 1, 3, 4])
    assert dropped == 2
    assert store.missing(spec.job_id, spec.total) == [1, 3, 4, 5]
    p = store.progress(spec.job_id)
    assert p.done == 2 and p.by_status.get(COMPLETED) == 2
    assert not p.by_status.get(FAILED) and not p.by_status.get(CANCELLED)
    assert (p.prompt_tokens, p.total_tokens) == (20, 40), "tokens of dropped rows taken back"

    # A dropped row can be saved again (first writer wins once more) and is counted once.
    assert store.save(spec.job_id, _result(1, COMPLETED, 5))
    p = store.progress(spec.job_id)
    assert p.done == 3 and p.by_status[COMPLETED] == 3 and p.total_tokens == 50


def test_a_row_without_tokens_is_dropped(store):
    """A cancelled row used no tokens: dropping it takes back nothing (Redis refuses the
    `-0` a Lua script would send) and --retry-failed can ask it again."""
    spec = _job(store)
    assert store.save(spec.job_id, _result(0, CANCELLED, tokens=0))
    assert store.save(spec.job_id, _result(1, COMPLETED))
    assert store.drop(spec.job_id, (CANCELLED,), [0, 1]) == 1
    p = store.progress(spec.job_id)
    assert p.done == 1 and p.total_tokens == 20 and store.missing(spec.job_id, 2) == [0]


def test_mark_unstarted_passes_over_claimed_and_answered_rows(store):
    spec = _job(store)
    store.save(spec.job_id, _result(0, COMPLETED))
    assert store.begin(spec.job_id, 1, 60, first=False).claimed
    marked = store.mark_unstarted(spec.job_id, [0, 1, 2, 3], CANCELLED, "stop")
    assert marked == 2
    got = store.get(spec.job_id, range(6))
    assert got[0].status == COMPLETED and 1 not in got
    assert got[2].status == got[3].status == CANCELLED and got[2].error == "stop"
    # The row in flight still gets its own result afterwards.
    assert store.save(spec.job_id, _result(1, COMPLETED))
    store.release(spec.job_id, 1)
    p = store.progress(spec.job_id)
    assert p.done == 4 and p.by_status == {COMPLETED: 2, CANCELLED: 2}


def test_begin_finds_the_result_then_the_stop_then_claims(store):
    spec = _job(store)
    job = spec.job_id
    store.save(job, _result(0, COMPLETED, 7))

    start = store.begin(job, 0, 60, first=True)
    assert start.done is not None and start.done.usage.prompt_tokens == 7
    assert not start.claimed and start.stop is None
    assert store.progress(job).started == 1, "the first row of a task counts the task"

    start = store.begin(job, 1, 60, first=False)
    assert start.claimed and start.done is None
    assert store.progress(job).started == 1
    assert not store.begin(job, 1, 60, first=False).claimed, "a claimed row is busy"
    assert store.mark_unstarted(job, [1], CANCELLED, "stop") == 0, "claimed: not marked"

    # finish saves the row, counts it, and lets the claim go in the same step.
    assert store.finish(job, _result(1, COMPLETED))
    assert not store.finish(job, _result(1, FAILED)), "first writer wins"
    p = store.progress(job)
    assert p.done == 2 and p.by_status == {COMPLETED: 2} and p.total_tokens == 34
    assert store.drop(job, [COMPLETED], [1]) == 1
    assert store.begin(job, 1, 60, first=False).claimed, "the claim was released"
    store.release(job, 1)

    store.stop(job, CANCELLED, "stopped by test")
    start = store.begin(job, 2, 60, first=True)
    assert start.stop == (CANCELLED, "stopped by test") and not start.claimed
    assert store.mark_unstarted(job, [2], CANCELLED, "stopped by test") == 1, "not claimed"


def test_stop_and_clear(store):
    spec = _job(store)
    store.stop(spec.job_id, CANCELLED, "why")
    assert store.stopped(spec.job_id) == (CANCELLED, "why")
    store.clear_stop(spec.job_id)
    assert store.stopped(spec.job_id) is None


def test_meta_and_latest_job(store):
    first, second = _job(store), _job(store)
    store.set_record(first.job_id, {"input": "/a.csv"}, "key-a")
    store.set_record(second.job_id, {"input": "/a.csv", "n": 2}, "key-a")
    assert store.record(second.job_id) == {"input": "/a.csv", "n": 2}
    assert store.latest_job("key-a") == second.job_id
    assert store.latest_job("key-b") is None


def test_redis_claim_outlives_its_lease_while_held_and_lapses_after(redis_server):
    url = fresh_db(redis_server.url, 11)
    holder, other = RedisStore(url, lease_s=1.0), RedisStore(url, lease_s=1.0)
    spec = _job(holder)
    assert _claim(holder, spec.job_id, 0)
    time.sleep(2.5)  # more than two leases: renewed in the background meanwhile
    assert not _claim(other, spec.job_id, 0), "a live holder keeps its claim"
    holder.release(spec.job_id, 0)
    assert _claim(other, spec.job_id, 0), "released: free at once"

    # A holder that dies (here: a process killed with SIGKILL) stops renewing.
    script = (
        "import os, signal, sys\n"
        "from worker.store import RedisStore\n"
        f"s = RedisStore({url!r}, lease_s=1.0)\n"
        f"assert s.begin({spec.job_id!r}, 1, 60, first=False).claimed\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False)
    assert not _claim(other, spec.job_id, 1), "the dead holder's lease has not lapsed yet"
    time.sleep(1.5)
    assert _claim(other, spec.job_id, 1), "lapsed one lease after its holder died"


def test_lease_follows_the_visibility_timeout():
    assert lease_for(3600) == 30
    assert lease_for(120) == 30
    assert lease_for(30) == 10
    assert lease_for(3) == 2


def test_embedded_job_is_held_by_one_process_at_a_time(tmp_path):
    a, b = LocalStore(tmp_path), LocalStore(tmp_path)
    spec = _job(a)
    assert not b.busy(spec.job_id)
    with a.hold(spec.job_id):
        assert b.busy(spec.job_id)
        with pytest.raises(JobBusy, match="askbatch cancel"), b.hold(spec.job_id):
            pass
    assert not b.busy(spec.job_id)
    with b.hold(spec.job_id):
        pass


def test_a_result_is_stored_compactly_and_read_back_whole(store):
    """Fields at their defaults are left out of the stored JSON (a 1,000,000-row job's rows
    live in Redis) and come back as they were, non-default ones included."""
    spec = _job(store, total=3)
    full = Result(
        index=0,
        status=COMPLETED,
        answer="x = 1",
        usage=Usage(7, 3, 10, cached_tokens=2),
        model="m",
        thread_id="resp_1",
        latency_s=0.25,
        attempts=2,
        service_tier="flex",
        cost_usd=Decimal("0.000012"),
        extra={"answer.value": "1"},
    )
    bare = Result(index=1, status=FAILED, error="boom", usage=Usage(reported=False))
    assert store.save(spec.job_id, full) and store.save(spec.job_id, bare)
    assert store.get(spec.job_id, [0, 1]) == {0: full, 1: bare}
    # By position, without names, and without the trailing fields left at their defaults.
    assert (
        '"answer"' not in full.stored()
        and bare.stored() == '["failed","","boom",[0,0,0,0,0,false]]'
    )
    assert len(full.stored()) < len(json.dumps(full.to_json())) / 2
    # A row stored by name (by an earlier version) still reads back whole.
    assert Result.from_stored(json.dumps(full.to_json()), 0) == full


def test_rows_stored_by_name_before_still_read_and_drop(redis_server):
    """A job begun by an earlier askbatch, which stored each row by field name, resumed by this
    one: its rows read back, and drop.lua takes their tokens back."""
    store = RedisStore(fresh_db(redis_server.url, 11))
    spec = _job(store, total=2)
    old = _result(0, FAILED, tokens=7)
    assert store.save(spec.job_id, old)
    named = json.dumps(old.to_json())
    store.redis.hset(store._key(spec.job_id, "results"), "0", named)
    assert store.get(spec.job_id, [0]) == {0: old}
    assert store.drop(spec.job_id, [FAILED], [0]) == 1
    p = store.progress(spec.job_id)
    assert (p.done, p.prompt_tokens, p.total_tokens) == (0, 0, 0)
