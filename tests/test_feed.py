"""A distributed job's tasks go to the broker a window at a time (jobs/feed.py), with real
redis-server, Celery workers and `askbatch` processes: the queue never holds more than the
window, a Ctrl-C before every row was sent says so and `resume` sends the rest, and a cancel
marks the rows never sent."""

from __future__ import annotations

import signal
import threading
import time

import redis

from tests.conftest import askbatch, base_env, start_workers, write_csv
from tests.double.expect import answer_for
from tests.jobtools import Background, asked, fresh_db, read_rows, wait_for

AHEAD = 5


def _setup(tmp_path, api, redis_server, db, n, marker=""):
    url = fresh_db(redis_server.url, db)
    env = base_env(tmp_path, api) | {
        "ASKBATCH_BROKER_URL": url,
        "ASKBATCH_QUEUE_AHEAD": str(AHEAD),
    }
    rows = [[f"r{i}", f"question {i} {marker}".strip()] for i in range(n)]
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], rows)
    return env, rows, sheet, redis.Redis.from_url(url)


def _run(sheet, out, env, tmp_path):
    args = ["run", str(sheet), "-o", str(out), "--provider", "chat"]
    return Background.start(args, env, tmp_path / "run.log")


def _first_window(sheet, out, env, tmp_path, broker):
    """`run` with no worker yet, once it has queued its first window: (run, job id)."""
    run = _run(sheet, out, env, tmp_path)
    job = run.job_id()
    wait_for("the first window", lambda: broker.llen("askbatch") == AHEAD)
    return run, job


def _check_completed(out, rows):
    got = read_rows(out)
    assert [r["id"] for r in got] == [r[0] for r in rows], "every row once, in input order"
    for (_, question), row in zip(rows, got, strict=True):
        assert (row["status"], row["answer"]) == ("completed", answer_for(question, 1)), row


def test_the_queue_holds_a_window_of_the_job(tmp_path, api, redis_server):
    env, rows, sheet, broker = _setup(tmp_path, api, redis_server, 6, 40, "[[sleep:0.1]]")
    out = tmp_path / "out.csv"
    deepest, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            deepest[0] = max(deepest[0], broker.llen("askbatch"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    workers = start_workers(env, 1, tmp_path, concurrency=2)
    try:
        run = _run(sheet, out, env, tmp_path)
        assert run.wait(120) == 0, run.text() + workers.log_text()[-3000:]
    finally:
        stop.set()
        workers.stop()
    _check_completed(out, rows)
    assert 1 <= deepest[0] <= AHEAD, f"the queue held {deepest[0]} tasks at most"
    assert sorted(asked(api).values()) == [1] * 40


def test_ctrl_c_before_every_row_was_sent_then_resume_sends_the_rest(tmp_path, api, redis_server):
    env, rows, sheet, broker = _setup(tmp_path, api, redis_server, 7, 20)
    out = tmp_path / "out.csv"
    run, job = _first_window(sheet, out, env, tmp_path, broker)
    time.sleep(1.0)  # no worker answers: the window stays as it is
    assert broker.llen("askbatch") == AHEAD
    run.kill(signal.SIGINT)
    assert run.proc.returncode == 130, run.text()
    assert f"{AHEAD} rows of job {job} were sent" in run.text()
    assert f"`askbatch resume {job}` sends them" in run.text()

    workers = start_workers(env, 1, tmp_path, concurrency=4)
    try:
        resumed = askbatch(["resume", job], env, out)
    finally:
        workers.stop()
    assert resumed.code == 0, resumed.stderr
    _check_completed(out, rows)
    # The first window's tasks were queued twice (run's, then resume's): asked once each.
    assert sorted(asked(api).values()) == [1] * 20


def test_cancel_marks_the_rows_never_sent(tmp_path, api, redis_server):
    env, _, sheet, broker = _setup(tmp_path, api, redis_server, 8, 20)
    out = tmp_path / "out.csv"
    run, job = _first_window(sheet, out, env, tmp_path, broker)
    cancel = askbatch(["cancel", job], env, out)
    assert cancel.code == 0, cancel.stderr
    assert run.wait(60) == 1, run.text()
    assert [r["status"] for r in read_rows(out)] == ["cancelled"] * 20
    assert asked(api) == {}, "nothing was asked"
