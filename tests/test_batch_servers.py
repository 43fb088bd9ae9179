"""The Batch route against servers that behave as real ones do, through the double: OGX's
ways (`batch_ogx`: no counts before validation, no expiry, only chat lines, a cancelled batch
keeps no output), a batch that never ends, a validation that names one line, and an error
askbatch did not expect while reading a batch. tests/test_real_servers.py runs OGX itself."""

from __future__ import annotations

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.jobtools import JOB_ID, Background, InProcess, asked, read_rows, wait_for
from worker.batch import records, results
from worker.store import LocalStore

# The `api` fixture sets the double's options back (the batch_* ones too) around each test.
ROWS = [[str(i), "", f"question number {i}"] for i in range(6)]


def run(tmp_path, api, args, rows=ROWS, env=None):
    environment = base_env(tmp_path, api) | (env or {})
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], rows)
    out = tmp_path / "sheet.out.csv"
    return askbatch(["run", str(sheet), "-o", str(out), "--batch", *args], environment, out)


def test_a_server_that_takes_no_responses_lines_stops_before_more_is_uploaded(tmp_path, api):
    api.configure(batch_ogx=1)
    three_files = {"ASKBATCH_BATCH_MAX_LINES": "2"}
    refused = run(tmp_path, api, ["--provider", "responses"], env=three_files)
    assert refused.code == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    [message] = [line for line in refused.stderr.splitlines() if "askbatch: error:" in line]
    assert "does not take /v1/responses lines (it takes /v1/chat/completions)" in message
    assert "--provider chat" in message
    stats = api.stats()
    assert stats["files"].get("batch") == 1, "the first file only"
    assert stats["batches"].get("created", 0) == 0
    assert not refused.output.exists(), "nothing was answered: no CSV"


def test_a_batch_that_never_ends_is_given_up_and_its_lines_sent_again(tmp_path, api):
    # The first batch stays in_progress for ever (a cancel leaves it cancelling for ever), as
    # OGX keeps a batch a restart interrupted; its window ends 2 s after it was created.
    api.configure(batch_stall_next=1, batch_window_s=2)
    result = run(tmp_path, api, [], env={"ASKBATCH_BATCH_MARGIN": "1"})
    assert result.code == 0, result.stderr
    rows = result.rows()
    assert [r["status"] for r in rows] == ["completed"] * 6
    assert {r["attempts"] for r in rows} == {"2"}, "sent in the batch given up, then again"
    assert api.stats()["batches"].get("created") == 2
    assert all(n == 1 for n in asked(api).values()) and len(asked(api)) == 6
    job = JOB_ID.search(result.stderr).group(1)
    shown = askbatch(["status", job], base_env(tmp_path, api), tmp_path / "x")
    assert "given up: still in_progress at the server" in shown.stdout, shown.stdout
    assert "its unfinished lines were submitted again" in shown.stdout


def test_a_cancel_of_a_batch_that_stays_cancelling_ends_the_job(tmp_path, api):
    api.configure(batch_stall_next=1)  # in_progress for ever; once cancelled, cancelling
    env = base_env(tmp_path, api) | {"ASKBATCH_BATCH_MARGIN": "1"}
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], ROWS)
    out = tmp_path / "out.csv"
    going = Background.start(["run", str(sheet), "-o", str(out), "--batch"], env, tmp_path / "log")
    job = going.job_id()
    wait_for("the batch", lambda: api.stats()["batches"].get("created"))
    cancelled = askbatch(["cancel", job], env, out)
    assert cancelled.code == 0, cancelled.stderr
    assert going.wait(120) == 1, going.text()
    assert [r["status"] for r in read_rows(out)] == ["cancelled"] * 6
    assert api.stats()["batches"].get("created") == 1, "nothing sent again"
    shown = askbatch(["status", job], env, out)
    assert "given up: still cancelling at the server" in shown.stdout, shown.stdout
    assert "after askbatch cancelled it" in shown.stdout


def test_a_validation_naming_one_line_fails_that_row_and_sends_the_others(tmp_path, api):
    rows = [*ROWS[:3], ["3", "", "a line the server refuses [[invalid]]"], *ROWS[4:]]
    result = run(tmp_path, api, [], rows)
    assert result.code == 1, result.stderr
    out = {r["id"]: r for r in result.rows()}
    bad = out.pop("3")
    assert bad["status"] == "failed"
    assert (
        bad["error"] == "the server refused the line: invalid_request: Messages must be an array."
    )
    # Sent in two batches (`attempts`), the first refused whole: each answered once.
    assert all(r["status"] == "completed" and r["attempts"] == "2" for r in out.values()), out
    assert all(n == 1 for n in asked(api).values()) and len(asked(api)) == 5
    stats = api.stats()
    assert stats["batches"].get("failed") == 1 and stats["batches"].get("completed") == 1
    job = JOB_ID.search(result.stderr).group(1)
    shown = askbatch(["status", job], base_env(tmp_path, api), tmp_path / "x")
    assert "refused for 1 of its lines" in shown.stdout, shown.stdout


def test_a_cancel_on_a_server_that_keeps_no_output(tmp_path, api):
    """OGX writes no output file for a cancelled batch: the turns its lines answered are lost.
    Nothing answered in an earlier batch is asked again; the rest is written `cancelled`."""
    api.configure(batch_ogx=1)
    rows = [
        ["a1", "A", "first of A"],
        ["b1", "B", "first of B"],
        ["a2", "A", "second of A"],
        ["b2", "B", "second of B"],
    ]
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], rows)
    out = tmp_path / "out.csv"
    going = Background.start(
        ["run", str(sheet), "-o", str(out), "--batch", "--provider", "chat"], env, tmp_path / "log"
    )
    job = going.job_id()
    answered = lambda: api.stats()["batch_lines"].get("answered", 0)  # noqa: E731
    wait_for("round 1", lambda: answered() >= 2)
    api.configure(batch_lines_per_s=0.1)  # round 2: a line every 10 s, time for the cancel
    wait_for("a line of round 2 answered at the server", lambda: answered() >= 3, timeout=60)
    cancelled = askbatch(["cancel", job], env, out)
    assert cancelled.code == 0, cancelled.stderr
    assert going.wait(120) == 1, going.text()
    statuses = {r["id"]: r["status"] for r in read_rows(out)}
    assert statuses == {"a1": "completed", "b1": "completed", "a2": "cancelled", "b2": "cancelled"}
    assert all(n == 1 for n in asked(api).values()), "nothing asked twice"
    stats = api.stats()
    assert stats["batches"].get("created") == 2 and stats["batches"].get("cancelled") == 1
    assert API_KEY not in going.text()


def test_an_unexpected_error_reading_a_batch_stops_the_look_and_resume_goes_on(
    tmp_path, api, monkeypatch, capsys
):
    main = InProcess(base_env(tmp_path, api), monkeypatch, capsys, tmp_path)
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], ROWS)
    out = tmp_path / "out.csv"
    real_parse = results.parse
    failures = []

    def parse(raw, job_id):  # a bug met on the first line askbatch reads, once
        if not failures:
            failures.append(raw)
            raise RuntimeError("boom")
        return real_parse(raw, job_id)

    monkeypatch.setattr(results, "parse", parse)
    flags = ["--batch", "-o", out, "--provider", "chat"]
    stopped = main("run", sheet, *flags, "--quiet")
    assert stopped.code == 1, stopped.stderr
    [message] = stopped.stderr.strip().splitlines()
    assert message.startswith("askbatch: error: job ") and "(RuntimeError: boom)" in message
    assert "`askbatch resume" in message and "Traceback" not in stopped.stderr
    job = JOB_ID.search(message).group(1)
    [record] = records.load(LocalStore(tmp_path / "state"), job)[0]
    assert record.ended and "RuntimeError: boom" in record.given_up, "closed, not left unread"
    resumed = main("resume", job, "--overwrite", "--quiet")
    assert resumed.code == 1, resumed.stderr
    failed = [r for r in read_rows(out) if r["status"] == "failed"]
    assert len(failed) == 6 and "could not read batch batch_" in failed[0]["error"]
    again = main("resume", job, "--retry-failed", "--overwrite", "--quiet")
    assert again.code == 0, again.stderr
    assert [r["status"] for r in read_rows(out)] == ["completed"] * 6
