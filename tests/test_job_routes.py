"""Every route a job can take — embedded, distributed on real workers, `--batch` embedded and
`--batch` distributed — started and resumed through the CLI and through the page's HTTP API:
the same answers CSV comes out, cell for cell, whichever front end ran it and however often it
was cancelled part-way and taken up again (jobs/job.py is the one sequence behind them all).

Each route's reference is `askbatch run -q` straight through. Then `run` is cancelled part-way
(`askbatch cancel`) and `resume --retry-failed` finishes it; and the page starts the job, its
cancel button stops it part-way and its retry button finishes it. The worksheet has a thread
of three turns and a row the API refuses (`failed`, asked again by every retry, failing the
same way)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from tests.conftest import API_KEY, askbatch, start_workers, write_csv
from tests.jobtools import (
    JOB_ID,
    Background,
    InProcess,
    fresh_db,
    read_rows,
    redis_statuses,
    sqlite_statuses,
    wait_for,
)
from tests.webtools import Server, assert_same_answers, csv_rows, priced_env, wait_job

ROWS = 16
BATCH_ENV = {"ASKBATCH_BATCH_MAX_LINES": "5", "ASKBATCH_BATCH_POLL_S": "0.5"}


@dataclass(frozen=True)
class Route:
    distributed: bool
    batch: bool

    @property
    def flags(self) -> list[str]:
        return ["--batch"] if self.batch else ["--concurrency", "2"]

    @property
    def form(self) -> dict[str, str]:
        return {"batch": "on"} if self.batch else {}

    @property
    def ignored(self) -> set[str]:
        # A row in a cancelled batch was asked once already: its line's attempt number (the
        # `attempts` cell) counts that batch, as the run's own history.
        return {"attempts"} if self.batch else set()


ROUTES = {
    "embedded": Route(distributed=False, batch=False),
    "distributed": Route(distributed=True, batch=False),
    "batch-embedded": Route(distributed=False, batch=True),
    "batch-distributed": Route(distributed=True, batch=True),
}


def worksheet(tmp_path, route: Route):
    """ROWS rows: a thread of three turns among them, and one the API refuses. Synchronous
    rows take a while each, so that a cancel finds most of them not started; a batch's pace is
    the double's (batch_lines_per_s)."""
    slow = "" if route.batch else " [[sleep:0.8]]"
    rows = [[f"q{i}", "", f"what is {i} + {i}?{slow}"] for i in range(ROWS - 3)]
    rows[4][2] += " [[400]]"
    rows[6:6] = [
        ["t1", "th", f"name a prime number{slow}"],
        ["t2", "th", f"and the next one?{slow}"],
        ["t3", "th", f"and the one after that?{slow}"],
    ]
    return write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], rows)


@pytest.fixture(scope="module")
def broker(redis_server, double, tmp_path_factory):
    """Two real `askbatch worker` processes of one thread each, on a Redis database of this
    module's own: a synchronous job's rows go two at a time, so a cancel finds most waiting."""
    from tests.conftest import base_env

    tmp = tmp_path_factory.mktemp("route-workers")
    url = fresh_db(redis_server.url, 11)
    workers = start_workers(base_env(tmp, double) | {"ASKBATCH_BROKER_URL": url}, 2, tmp, 1)
    yield url
    workers.stop()
    assert API_KEY not in workers.log_text()


def environment(request, tmp_path, api, route: Route) -> dict[str, str]:
    env = priced_env(tmp_path, api) | BATCH_ENV
    if route.distributed:
        env["ASKBATCH_BROKER_URL"] = request.getfixturevalue("broker")
    return env


def answering(env, tmp_path, api, route: Route):
    """answered(job): how many rows of the job have an answer so far (a --batch job's: the
    lines the double answered since this was called, which the job keeps whatever comes)."""
    before = api.stats()["batch_lines"].get("answered", 0)

    def answered(job: str) -> int:
        if route.batch:
            return api.stats()["batch_lines"].get("answered", 0) - before
        if route.distributed:
            return len(redis_statuses(env["ASKBATCH_BROKER_URL"], job))
        return len(sqlite_statuses(tmp_path / "state", job))

    return answered


def cancelled_part_way(rows: list[dict[str, str]]) -> None:
    statuses = [r["status"] for r in rows]
    assert "cancelled" in statuses and "completed" in statuses, statuses


@pytest.mark.parametrize("name", list(ROUTES))
def test_the_cli_and_the_page_write_the_same_answers(
    name, request, tmp_path, api, monkeypatch, capsys
):
    route = ROUTES[name]
    env = environment(request, tmp_path, api, route)
    sheet = worksheet(tmp_path, route)

    # The reference: straight through, quiet; its end still names the job (§5 of issue 24).
    ref = tmp_path / "ref.csv"
    straight = askbatch(["run", str(sheet), "-o", str(ref), "-q", *route.flags], env, ref)
    assert straight.code == 1, straight.stderr  # the refused row
    named = JOB_ID.search(straight.stderr)
    assert named and f"askbatch resume {named[1]}" in straight.stderr, straight.stderr
    want = read_rows(ref)
    assert [r["status"] for r in want].count("completed") == ROWS - 1

    # The CLI: cancelled part-way, then resumed with its failed and cancelled rows.
    out = tmp_path / "cli.csv"
    slow_batches(api, route)
    answered = answering(env, tmp_path, api, route)
    run = Background.start(["run", str(sheet), "-o", str(out), *route.flags], env,
                           tmp_path / "run.log")  # fmt: skip
    job = run.job_id()
    wait_for("rows answered", lambda: answered(job) >= 2)
    cancel = InProcess(env, monkeypatch, capsys, tmp_path)("cancel", job)
    assert cancel.code == 0 and "cancel" in cancel.stdout, cancel.stdout
    assert run.wait() == 1, run.text()
    cancelled_part_way(read_rows(out))
    api.configure(batch_lines_per_s=2000)
    resumed = askbatch(["resume", job, "--retry-failed", "--overwrite", "-q"], env, out)
    assert resumed.code == 1, resumed.stderr[-3000:]
    assert f"job {job}: `askbatch resume {job} --retry-failed`" in resumed.stderr
    assert_same_answers(read_rows(out), want, ignore=route.ignored)

    # The page: started, cancelled part-way, its failed and cancelled rows retried.
    slow_batches(api, route)
    answered = answering(env, tmp_path, api, route)
    server = Server.start(env, tmp_path / "serve.log", "--concurrency", "2")
    try:
        with server.client() as c:
            job = start_on_page(c, sheet, route.form)
            facts = wait_job(c, job, lambda f: answered(job) >= 2 or f.get("note"))
            assert "note" not in facts, facts["note"]  # not `KeyError(0)` (the Batch route)
            r = c.post(f"/api/jobs/{job}/cancel")
            assert r.status_code == 200 and "cancel" in r.json()["message"], r.text
            # Finished, and no longer running here: the retry may start.
            facts = wait_job(c, job, lambda f: f["state"] == "finished" and f["can_resume"])
            assert facts["by_status"].get("cancelled"), facts["by_status"]
            cancelled_part_way(csv_rows(c.get(f"/api/jobs/{job}/answers.csv").text))
            api.configure(batch_lines_per_s=2000)
            r = c.post(f"/api/jobs/{job}/retry")
            assert r.status_code == 200 and "rows to ask" in r.json()["message"], r.text
            facts = wait_job(c, job, lambda f: ended(f) or f.get("note"))
            assert "note" not in facts, facts["note"]
            got = csv_rows(c.get(f"/api/jobs/{job}/answers.csv").text)
    finally:
        server.stop()
    assert_same_answers(got, want, ignore=route.ignored)
    assert "Traceback" not in server.text and API_KEY not in server.text


def ended(facts: dict) -> bool:
    return facts["state"] == "finished" and facts["done"] == ROWS


def slow_batches(api, route: Route) -> None:
    """A line answered every two seconds, so that a cancel finds every batch still going."""
    if route.batch:
        api.configure(batch_lines_per_s=0.5)


def start_on_page(client, sheet, form: dict[str, str]) -> str:
    est = client.post(
        "/api/estimate", files={"worksheet": (sheet.name, sheet.read_bytes())}, data=form
    )
    assert est.status_code == 200, est.text
    started = client.post("/api/jobs", data={"upload": est.json()["upload"], **form})
    assert started.status_code == 201, started.text
    return started.json()["job"]


def test_the_page_prepares_a_batch_job_again_when_resuming(
    request, tmp_path, api, monkeypatch, capsys
):
    """A --batch job whose preparation was cut short (its rows and thread map, which every
    round's lines are built from, never kept): the page's retry prepares it again, as
    `askbatch resume` does, and the job ends as a straight run does."""
    route = ROUTES["batch-embedded"]
    env = environment(request, tmp_path, api, route)
    sheet = worksheet(tmp_path, route)
    ref = tmp_path / "ref.csv"
    assert askbatch(["run", str(sheet), "-o", str(ref), "--batch"], env, ref).code == 1
    out = tmp_path / "out.csv"
    slow_batches(api, route)
    answered = answering(env, tmp_path, api, route)
    run = Background.start(["run", str(sheet), "-o", str(out), "--batch"], env,
                           tmp_path / "run.log")  # fmt: skip
    job = run.job_id()
    wait_for("a line answered", lambda: answered(job) >= 1)
    assert InProcess(env, monkeypatch, capsys, tmp_path)("cancel", job).code == 0
    assert run.wait() == 1, run.text()
    with sqlite3.connect(tmp_path / "state" / "jobs" / f"{job}.sqlite") as db:
        db.execute("DELETE FROM rows")
        db.execute("DELETE FROM batches WHERE key = '~threads'")
    api.configure(batch_lines_per_s=2000)
    server = Server.start(env, tmp_path / "serve.log")
    try:
        with server.client() as c:
            r = c.post(f"/api/jobs/{job}/retry")
            assert r.status_code == 200, r.text
            facts = wait_job(c, job, lambda f: ended(f) or f.get("note"))
            assert "note" not in facts, facts["note"]
            got = csv_rows(c.get(f"/api/jobs/{job}/answers.csv").text)
    finally:
        server.stop()
    assert_same_answers(got, read_rows(ref), ignore=route.ignored)
