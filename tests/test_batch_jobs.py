"""A --batch job over time: a `run` SIGKILLed while its batches are out, then `resume`
(nothing lost, nothing asked twice); `cancel`; the spending cap; a distributed job whose `run`
exits and the workers finish; then `collect`."""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.double.fixture import BATCH_OPTIONS
from tests.jobtools import Background, asked, fresh_db, read_rows, wait_for
from worker.batch import records
from worker.store import LocalStore

ROWS = [[str(i), "", f"question number {i}"] for i in range(12)]


@pytest.fixture
def batch_api(api):
    api.configure(**BATCH_OPTIONS)
    yield api
    api.configure(**BATCH_OPTIONS)


def sheet(tmp_path, rows=ROWS):
    return write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], rows)


def batches_created(api) -> int:
    return api.stats()["batches"].get("created", 0)


def test_killed_run_then_resume_asks_every_line_once(tmp_path, batch_api):
    # Slow batches: 2 lines a second, 3 files of 4 lines, so the kill comes while all are out.
    batch_api.configure(batch_lines_per_s=2)
    env = base_env(tmp_path, batch_api) | {"ASKBATCH_BATCH_MAX_LINES": "4"}
    out = tmp_path / "out.csv"
    run = Background.start(["run", str(sheet(tmp_path)), "-o", str(out), "--batch"], env,
                           tmp_path / "run.log")  # fmt: skip
    job = run.job_id()
    wait_for("three batches created", lambda: batches_created(batch_api) >= 3, timeout=60)
    run.kill(signal.SIGKILL)
    shown = askbatch(["status", job], env, out)
    # The kill may come between the API creating the third batch and `run` storing its id:
    # status then lists that file as "not created yet", and resume finds its batch by file.
    assert shown.code == 0 and "batches: 3" in shown.stdout, shown.stdout
    assert "askbatch resume" in shown.stdout
    batch_api.configure(batch_lines_per_s=2000)
    resumed = askbatch(["resume", job, "--overwrite"], env, out)
    assert resumed.code == 0, resumed.stderr
    assert [r["status"] for r in read_rows(out)] == ["completed"] * 12
    assert batches_created(batch_api) == 3, "resume picked the batches up, created none"
    assert all(n == 1 for n in asked(batch_api).values()), asked(batch_api)
    assert len(asked(batch_api)) == 12 and batch_api.stats()["batch_repeats"] == 0
    # No row was put in a second batch: every row sits in exactly one of the job's batches.
    found = records.load(LocalStore(tmp_path / "state"), job)[0]
    held = [index for record in found for index, _ in record.rows]
    assert sorted(held) == list(range(12)) and len(found) == 3
    assert API_KEY not in resumed.stderr + run.text()


def answering(tmp_path, api, answered: int):
    """`run --batch` of 12 rows in 2 batches answered a line every 2 seconds (so that a
    loaded machine's `cancel` still finds them running), once `answered` lines are: (the
    run, its job id, its environment, its output)."""
    api.configure(batch_lines_per_s=0.5)
    env = base_env(tmp_path, api) | {"ASKBATCH_BATCH_MAX_LINES": "6"}
    out = tmp_path / "out.csv"
    run = Background.start(["run", str(sheet(tmp_path)), "-o", str(out), "--batch"], env,
                           tmp_path / "run.log")  # fmt: skip
    job = run.job_id()
    wait_for("lines answered", lambda: api.stats()["batch_lines"].get("answered", 0) >= answered)
    return run, job, env, out


def test_cancel_keeps_finished_lines_and_cancels_the_rest(tmp_path, batch_api):
    run, job, env, out = answering(tmp_path, batch_api, 2)
    cancelled = askbatch(["cancel", job], env, out)
    assert cancelled.code == 0, cancelled.stderr
    assert "cancelling 2 batches" in cancelled.stdout, cancelled.stdout
    code = run.wait(120)
    assert code == 1, run.text()
    statuses = [r["status"] for r in read_rows(out)]
    assert set(statuses) == {"completed", "cancelled"}, statuses
    answered = batch_api.stats()["batch_lines"].get("answered", 0)
    assert statuses.count("completed") == answered, "every line billed is kept"
    assert batch_api.stats()["batches"].get("cancelled") == 2


def test_the_spending_cap_submits_no_batch_beyond_it(tmp_path, batch_api):
    prices = tmp_path / "prices.toml"  # the double billed as OpenAI, at batch prices
    prices.write_text(f'[base_urls]\n"{batch_api.base_url}" = "openai"\n')
    env = base_env(tmp_path, batch_api) | {"ASKBATCH_BATCH_MAX_LINES": "4"}
    out = tmp_path / "out.csv"
    # Each row holds 2,000 answer tokens at $1/M (gpt-5-mini's batch output price): one
    # batch of 4 rows holds about $0.008, so a second would pass $0.01.
    flags = ["--batch", "--prices", str(prices), "--answer-tokens", "2000"]
    result = askbatch(
        ["run", str(sheet(tmp_path)), "-o", str(out), *flags, "--max-cost", "0.01"], env, out
    )
    assert result.code == 3, result.stderr
    assert "spending cap of $0.01 stopped the job" in result.stderr
    assert batches_created(batch_api) == 1
    rows = read_rows(out)
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["skipped"] * 8
    assert "spending cap" in rows[4]["error"]
    assert sum(Decimal(r["cost_usd"]) for r in rows[:4]) < Decimal("0.01")


def distributed_env(tmp_path, api, redis_server, db: int) -> dict[str, str]:
    return base_env(tmp_path, api) | {
        "ASKBATCH_BROKER_URL": fresh_db(redis_server.url, db),
        "ASKBATCH_BATCH_MAX_LINES": "4",
        "ASKBATCH_BATCH_POLL_S": "1",
        # A job the workers are looking at is not idle, though no row is ever "started".
        "ASKBATCH_IDLE_WARNING": "1",
    }


def run_then_kill(tmp_path, api, env, out, batches: int) -> str:
    """`run --batch` on workers, killed once `batches` batches are out; returns the job id."""
    api.configure(batch_lines_per_s=2)
    run = Background.start(["run", str(sheet(tmp_path)), "-o", str(out), "--batch"], env,
                           tmp_path / "run.log")  # fmt: skip
    job = run.job_id()
    wait_for("batches created", lambda: batches_created(api) >= batches, timeout=60)
    run.kill(signal.SIGKILL)  # the submitting machine goes away
    return job


def test_distributed_job_finishes_on_the_workers_after_run_exits(tmp_path, batch_api, redis_server):
    from tests.conftest import start_workers

    env = distributed_env(tmp_path, batch_api, redis_server, 7)
    workers = start_workers(env, 1, tmp_path, concurrency=2)
    try:
        out = tmp_path / "out.csv"
        job = run_then_kill(tmp_path, batch_api, env, out, 1)
        shown = askbatch(["status", job], env, out)
        assert "batches:" in shown.stdout and "batch_" in shown.stdout, shown.stdout
        batch_api.configure(batch_lines_per_s=2000)

        def finished():
            shown = askbatch(["status", job], env, out)
            return "have a result" in shown.stdout and "12 of 12" in shown.stdout

        wait_for("the workers to finish the job", finished, timeout=120, every=1)
        collected = askbatch(["collect", job], env, out)
        assert collected.code == 0, collected.stderr
        assert [r["status"] for r in read_rows(out)] == ["completed"] * 12
        assert all(n == 1 for n in asked(batch_api).values())
        assert batch_api.stats()["batch_repeats"] == 0
    finally:
        workers.stop()
    assert API_KEY not in workers.log_text()


def test_distributed_resume_takes_over_the_looks(tmp_path, batch_api, redis_server):
    """A resume starts a new chain of looks on the workers; the run's chain ends, and no
    batch is created twice."""
    from tests.conftest import start_workers

    env = distributed_env(tmp_path, batch_api, redis_server, 8)
    workers = start_workers(env, 2, tmp_path, concurrency=2)
    try:
        out = tmp_path / "out.csv"
        job = run_then_kill(tmp_path, batch_api, env, out, 3)
        batch_api.configure(batch_lines_per_s=1)  # a resume that waits a few seconds
        resumed = askbatch(["resume", job, "--overwrite"], env, out)
        assert resumed.code == 0, resumed.stderr
        assert "no worker has picked up" not in resumed.stderr
        assert [r["status"] for r in read_rows(out)] == ["completed"] * 12
        assert batches_created(batch_api) == 3
        assert all(n == 1 for n in asked(batch_api).values()) and len(asked(batch_api)) == 12
    finally:
        workers.stop()
    assert "looking again" not in workers.log_text(), "no look failed"


def test_cancel_with_no_process_running_the_job(tmp_path, batch_api):
    """`run` was killed; `cancel` itself cancels the batches, keeps what they finished and
    writes the rest cancelled; `collect` then writes the CSV."""
    run, job, env, out = answering(tmp_path, batch_api, 1)
    run.kill(signal.SIGKILL)
    cancelled = askbatch(["cancel", job], env, out)
    assert cancelled.code == 0, cancelled.stderr
    assert "are marked cancelled" in cancelled.stdout, cancelled.stdout
    collected = askbatch(["collect", job], env, out)
    assert collected.code == 1, collected.stderr
    statuses = [r["status"] for r in read_rows(out)]
    assert "cancelled" in statuses and set(statuses) <= {"completed", "cancelled"}
    assert statuses.count("completed") == batch_api.stats()["batch_lines"].get("answered", 0)
