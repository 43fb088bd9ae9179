"""Jobs you can come back to: status, collect, resume, cancel and --retry-failed, through the
real `askbatch` command, against the API double, a real redis-server and real workers.

The double counts each question it answered (stats()["questions"]) and each request by kind
(stats()["requests"]); a request cut off by a killed client is not answered, so "asked once"
below means the question was paid for once."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import API_KEY, askbatch, base_env, start_workers, write_csv
from tests.double.expect import answer_for
from tests.jobtools import (
    Background,
    InProcess,
    asked,
    fresh_db,
    read_rows,
    redis_statuses,
    sqlite_statuses,
    wait_for,
)

MODEL = "test-model-1"


def _sheet(tmp_path, n, marker="[[sleep:0.3]]", name="sheet.csv"):
    rows = [[f"r{i}", f"question {i} {marker}"] for i in range(n)]
    return write_csv(tmp_path / name, ["id", "question"], rows), rows


def _check_all_completed(out, rows):
    got = read_rows(out)
    assert [r["id"] for r in got] == [r[0] for r in rows], "every row once, in input order"
    for (_rid, question), row in zip(rows, got, strict=True):
        assert (row["status"], row["answer"]) == ("completed", answer_for(question, 1)), row


def _start_embedded_chat(sheet, out, concurrency, env, tmp_path):
    """`askbatch run` on the chat provider in the background, logging to run.log."""
    args = ["run", str(sheet), "-o", str(out), "--provider", "chat", "--model", MODEL]
    args += ["--concurrency", str(concurrency)]
    return Background.start(args, env, tmp_path / "run.log")


def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def quick(tmp_path, monkeypatch, capsys):
    """quick(env) -> the CLI run in this process, for the commands that return at once."""
    return lambda env: InProcess(env, monkeypatch, capsys, tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_embedded_job_stopped_mid_way_is_resumed_without_asking_twice(sig, tmp_path, api, quick):
    env = base_env(tmp_path, api)
    cli = quick(env)
    sheet, rows = _sheet(tmp_path, 30)
    out = tmp_path / "out.csv"
    run = _start_embedded_chat(sheet, out, 3, env, tmp_path)
    job = run.job_id()
    state = tmp_path / "state"
    wait_for("a few answered rows", lambda: len(sqlite_statuses(state, job)) >= 6)
    run.kill(sig)
    if sig == signal.SIGINT:
        assert run.proc.returncode == 130
        assert f"askbatch resume {job}" in run.text()
    assert not out.exists() and _no_temp_files(tmp_path), "no half-written answers file"
    done = sqlite_statuses(state, job)
    assert 6 <= len(done) < 30 and set(done.values()) == {"completed"}
    # An answer the double sent as the process died was never stored: at most one per row in
    # flight (3), and only those may be asked again (docs/recovery.md: what may be asked twice).
    cut_off = sum(asked(api).values()) - len(done)
    assert 0 <= cut_off <= 3, "only the rows in flight were cut off"

    status = cli("status", job)
    assert status.code == 0, status.stderr
    assert f"{len(done)} of 30 have a result" in status.stdout
    assert f"askbatch resume {job}" in status.stdout

    resumed = askbatch(["resume", job], env, out)
    assert resumed.code == 0, resumed.stderr
    assert f"{30 - len(done)} of 30 rows to ask" in resumed.stderr
    _check_all_completed(out, rows)
    counts = sorted(asked(api).values())
    assert len(counts) == 30 and counts == [1] * (30 - cut_off) + [2] * cut_off, (
        "no question answered twice but those cut off in flight"
    )
    assert API_KEY not in out.read_text(encoding="utf-8-sig") + run.text() + resumed.stderr


def test_distributed_run_killed_then_collected_and_resumed(tmp_path, api, redis_server, quick):
    """The run command dies after publishing; resume publishes every task again, so each is
    in the queue twice: the workers still ask each question once."""
    url = fresh_db(redis_server.url, 12)
    env = base_env(tmp_path, api) | {"ASKBATCH_BROKER_URL": url}
    sheet, rows = _sheet(tmp_path, 12, marker="")
    out = tmp_path / "out.csv"
    run = Background.start(
        ["run", str(sheet), "-o", str(out), "--provider", "chat", "--model", MODEL],
        env,
        tmp_path / "run.log",
    )
    job = run.job_id()
    r = redis_server.client().__class__.from_url(url)
    wait_for("12 queued tasks", lambda: r.llen("askbatch") >= 12)
    run.kill(signal.SIGKILL)

    cli = quick(env)
    status = cli("status", job)
    assert status.code == 0 and "0 of 12 have a result" in status.stdout, status.stdout
    collected = cli("collect", job, "-o", tmp_path / "partial.csv")
    assert collected.code == 1, collected.stderr
    assert [p["status"] for p in read_rows(tmp_path / "partial.csv")] == ["pending"] * 12

    resume = Background.start(["resume", job], env, tmp_path / "resume.log")
    wait_for("the resumed tasks", lambda: r.llen("askbatch") >= 24)
    workers = start_workers(env, 1, tmp_path, concurrency=4)
    try:
        assert resume.wait() == 0, resume.text()
    finally:
        workers.stop()
    _check_all_completed(out, rows)
    assert sorted(asked(api).values()) == [1] * 12, "duplicate deliveries asked nothing"
    assert api.stats()["requests"]["chat"] == 12


def test_cancel_stops_a_running_embedded_job_and_resume_finishes_it(tmp_path, api, quick):
    env = base_env(tmp_path, api)
    cli = quick(env)
    sheet, rows = _sheet(tmp_path, 40, marker="[[sleep:0.4]]")
    out = tmp_path / "out.csv"
    run = _start_embedded_chat(sheet, out, 2, env, tmp_path)
    job = run.job_id()
    state = tmp_path / "state"
    wait_for("some answered rows", lambda: len(sqlite_statuses(state, job)) >= 4)

    busy = cli("resume", job)
    assert busy.code == 2 and "running in another askbatch process" in busy.stderr

    cancel = cli("cancel", job)
    assert cancel.code == 0 and "cancelling" in cancel.stdout, cancel.stdout + cancel.stderr
    assert run.wait(60) == 1, run.text()
    assert f"job {job} was cancelled" in run.text()
    got = read_rows(out)
    assert [r["id"] for r in got] == [r[0] for r in rows]
    statuses = [r["status"] for r in got]
    assert set(statuses) == {"completed", "cancelled"}, "no row left pending"
    completed = statuses.count("completed")
    assert completed < 40 - 4, "the job stopped well before its end"
    assert sum(asked(api).values()) == completed, "cancelled rows were never sent"
    assert all("cancelled" in r["error"] for r in got if r["status"] == "cancelled")

    # A plain resume leaves cancelled rows be; --retry-failed asks them.
    again = askbatch(["resume", job, "--retry-failed", "--overwrite"], env, out)
    assert again.code == 0, again.stderr
    assert f"{40 - completed} of 40 rows to ask" in again.stderr
    _check_all_completed(out, rows)
    assert sorted(asked(api).values()) == [1] * 40


def test_cancel_distributed_job_cancels_assistants_runs_in_flight(
    tmp_path, api, redis_server, quick
):
    url = fresh_db(redis_server.url, 13)
    env = base_env(tmp_path, api) | {"ASKBATCH_BROKER_URL": url}
    rows = [["n1", "never ends [[never]]"], ["n2", "nor this [[never]]"]]
    rows += [[f"r{i}", f"question {i}"] for i in range(6)]
    sheet = write_csv(tmp_path / "s.csv", ["id", "question"], rows)
    out = tmp_path / "out.csv"
    workers = start_workers(env, 1, tmp_path, concurrency=2)
    try:
        run = Background.start(
            ["run", str(sheet), "-o", str(out), "--provider", "assistants", "--timeout", "300"],
            env,
            tmp_path / "run.log",
        )
        job = run.job_id()
        # Both workers' threads are held by the two runs that never end.
        wait_for("two runs in flight", lambda: api.stats()["requests"].get("run_create") == 2)
        cancel = quick(env)("cancel", job)
        assert cancel.code == 0, cancel.stderr
        assert "6 rows not started are marked cancelled" in cancel.stdout, cancel.stdout
        assert "2 rows in flight" in cancel.stdout
        assert run.wait(120) == 1, run.text()
    finally:
        workers.stop()
    got = {r["id"]: r for r in read_rows(out)}
    assert len(got) == 8 and {r["status"] for r in got.values()} == {"cancelled"}
    assert api.stats()["requests"].get("run_cancel", 0) == 2, "each run in flight was cancelled"
    assert got["n1"]["run_id"].startswith("run_") and got["r0"]["run_id"] == ""
    assert redis_statuses(url, job) == dict.fromkeys(range(8), "cancelled")


def test_retry_failed_asks_again_only_the_failed_rows(tmp_path, api, quick):
    env = base_env(tmp_path, api)
    rows = [
        ["a", "", "plain one"],
        ["b", "", "flaky one [[500:2]]"],
        ["c", "", "broken one [[400]]"],
        ["d", "", ""],
        ["e", "t", "first turn [[500:2]]"],
        ["f", "t", "second turn"],
        ["g", "", "plain two"],
    ]
    sheet = write_csv(tmp_path / "s.csv", ["id", "thread", "question"], rows)
    out = tmp_path / "s.answers.csv"
    args = ["run", str(sheet), "--provider", "chat", "--model", MODEL, "--max-attempts", "2"]
    first = askbatch(args, env, out)
    assert first.code == 1, first.stderr
    before = {r["id"]: r["status"] for r in read_rows(out)}
    assert before == {
        "a": "completed",
        "b": "failed",
        "c": "failed",
        "d": "skipped",
        "e": "failed",
        "f": "skipped",
        "g": "completed",
    }
    sent = api.stats()["requests"]["chat"]
    assert sent == 1 + 2 + 1 + 2 + 1  # a, b twice, c, e twice, g

    refused = quick(env)("run", sheet, "--retry-failed")
    assert refused.code == 2 and "--overwrite" in refused.stderr

    retry = askbatch(["run", str(sheet), "--retry-failed", "--overwrite"], env, out)
    assert retry.code == 1, retry.stderr
    after = {r["id"]: r for r in read_rows(out)}
    assert {k: r["status"] for k, r in after.items()} == {
        "a": "completed",
        "b": "completed",
        "c": "failed",
        "d": "skipped",
        "e": "completed",
        "f": "completed",
        "g": "completed",
    }
    # b and e once more each (their third request goes through), c once, f for the first time.
    assert api.stats()["requests"]["chat"] - sent == 4
    assert after["f"]["answer"] == answer_for("second turn", 2), "f continued e's thread"
    assert after["e"]["thread_id"] == after["f"]["thread_id"]
    assert asked(api)["plain one"] == 1 and asked(api)["plain two"] == 1

    job = retry.stderr.split("job ", 1)[1].split()[0]
    status = quick(env)("status", job)
    assert "6 completed, 1 failed" not in status.stdout  # d is skipped, c failed
    assert "5 completed" in status.stdout and "1 failed" in status.stdout, status.stdout
    assert "finished" in status.stdout


def test_collect_honours_no_sanitize_and_overwrite(tmp_path, api, quick):
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["one"], ["two"]])
    out = tmp_path / "out.csv"
    formula = "=HYPERLINK(1)"
    run = askbatch(
        ["run", str(sheet), "-o", str(out), "--provider", "chat", "--model", formula], env, out
    )
    assert run.code == 0, run.stderr
    assert {r["model"] for r in read_rows(out)} == {"'" + formula}
    job = run.stderr.split("job ", 1)[1].split(":")[0]

    cli = quick(env)
    again = cli("collect", job)
    assert again.code == 2 and "--overwrite" in again.stderr
    raw = tmp_path / "raw.csv"
    collected = cli("collect", job, "-o", raw, "--no-sanitize")
    assert collected.code == 0, collected.stderr
    assert {r["model"] for r in read_rows(raw)} == {formula}
    safe = cli("collect", job, "--overwrite")
    assert safe.code == 0 and read_rows(out) == run.rows()
    assert sum(asked(api).values()) == 2, "collect asks nothing"


def test_changed_worksheet_is_refused(tmp_path, api, quick):
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["one"], ["two"]])
    out = tmp_path / "out.csv"
    run = askbatch(["run", str(sheet), "-o", str(out), "--provider", "chat"], env, out)
    job = run.stderr.split("job ", 1)[1].split(":")[0]
    requests = sum(api.stats()["requests"].values())
    write_csv(sheet, ["question"], [["two"], ["one"]])
    for args in (
        ["resume", job, "--retry-failed", "--overwrite"],
        ["collect", job, "-o", "x.csv"],
        ["run", str(sheet), "--retry-failed", "--overwrite"],
    ):
        res = quick(env)(*args)
        assert res.code == 2, (args, res.stderr)
        assert "changed since job" in res.stderr and str(sheet) in res.stderr
        assert "Traceback" not in res.stderr
    assert sum(api.stats()["requests"].values()) == requests
