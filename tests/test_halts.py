"""Errors no retry can mend stop the whole job (worker/fatal), against real processes and the
double's account rules (tests/double/accounts): a refused key, an unknown or forbidden model, an
account out of quota, a setting every row sends refused; and the errors that fail one row only.
The rows not asked stay `pending`, and `askbatch resume` asks each of them once."""

from __future__ import annotations

import re

import pytest

from tests.conftest import API_KEY, askbatch, base_env, start_workers, write_csv
from tests.jobtools import asked, fresh_db, read_rows

N = 60
CONCURRENCY = 4
WRONG_KEY = "sk-test-wrong-0123456789"


def sheet(tmp_path, n=N, marker=""):
    rows = [[f"r{i}", f"What is {i} times {i}? {marker}".strip()] for i in range(n)]
    return write_csv(tmp_path / "sheet.csv", ["id", "question"], rows)


def sent(api) -> int:
    return sum(api.stats()["requests"].values())


def job_of(text: str) -> str:
    found = re.search(r"askbatch resume (\d{8}-\d{6}-[0-9a-f]{6})", text)
    assert found, f"no resume command in:\n{text}"
    return found[1]


def run(tmp_path, env, *args, out=None):
    out = out or tmp_path / "out.csv"
    return askbatch(
        ["run", str(sheet(tmp_path)), "-o", str(out), "--concurrency", str(CONCURRENCY), *args],
        env,
        out,
    )


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_a_refused_key_stops_the_job_and_resume_finishes_it(provider, tmp_path, api):
    env = base_env(tmp_path, api) | {"OPENAI_API_KEY": WRONG_KEY}
    first = run(tmp_path, env, "--provider", provider)
    assert first.code == 2, first.stderr
    assert "OPENAI_API_KEY" in first.stderr and "refused the key" in first.stderr
    assert "Traceback" not in first.stderr and WRONG_KEY not in first.stderr
    assert not first.output.exists(), "nothing could be answered: no CSV"
    # At most the requests already in flight went out after the first 401.
    assert sent(api) <= CONCURRENCY, api.stats()["requests"]
    assert api.stats()["errors"] == {"401": sent(api)}

    job = job_of(first.stderr)
    api.reset()
    env["OPENAI_API_KEY"] = API_KEY
    again = askbatch(["resume", job], env, first.output)
    assert again.code == 0, again.stderr
    rows = read_rows(first.output)
    assert [r["status"] for r in rows] == ["completed"] * N
    assert sorted(asked(api).values()) == [1] * N, "each row asked exactly once"


def test_an_unknown_model_stops_the_job(tmp_path, api):
    env = base_env(tmp_path, api)
    first = run(tmp_path, env, "--model", "no-such-model")
    assert first.code == 2, first.stderr
    assert "'no-such-model' does not exist" in first.stderr
    assert "models available" in first.stderr and "--model" in first.stderr
    # responses: a conversation and then a response per row; only those in flight went out.
    assert api.stats()["requests"].get("response", 0) <= CONCURRENCY
    assert sent(api) <= 2 * CONCURRENCY
    assert not first.output.exists()


def test_a_forbidden_model_stops_the_job(tmp_path, api):
    first = run(tmp_path, base_env(tmp_path, api), "--provider", "chat", "--model", "forbidden-x")
    assert first.code == 2, first.stderr
    assert "refused access" in first.stderr and "'forbidden-x'" in first.stderr
    assert sent(api) <= CONCURRENCY


def test_a_setting_every_row_sends_stops_the_job(tmp_path, api):
    profile = tmp_path / "p.toml"
    profile.write_text('model = "reasoning-model"\ntemperature = 0.2\n')
    first = run(tmp_path, base_env(tmp_path, api), "--assistant", str(profile))
    assert first.code == 2, first.stderr
    assert "every row sends" in first.stderr and "temperature" in first.stderr
    assert api.stats()["requests"].get("response", 0) <= CONCURRENCY


def test_a_bad_request_about_one_row_fails_only_that_row(tmp_path, api):
    rows = [["r0", "Fine question"], ["r1", "Broken question [[400]]"], ["r2", "Another"]]
    path = write_csv(tmp_path / "sheet.csv", ["id", "question"], rows)
    out = tmp_path / "out.csv"
    done = askbatch(["run", str(path), "-o", str(out)], base_env(tmp_path, api), out)
    assert done.code == 1, done.stderr
    got = {r["id"]: r for r in read_rows(out)}
    assert got["r1"]["status"] == "failed" and "HTTP 400" in got["r1"]["error"]
    assert got["r0"]["status"] == got["r2"]["status"] == "completed"


def test_max_output_tokens_below_the_minimum_is_refused_up_front(tmp_path, api):
    profile = tmp_path / "p.toml"
    profile.write_text("max_output_tokens = 5\n")
    first = run(tmp_path, base_env(tmp_path, api), "--assistant", str(profile))
    assert first.code == 2 and "at least 16" in first.stderr, first.stderr
    assert sent(api) == 0


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_quota_running_out_stops_the_job_and_resume_asks_the_rest_once(
    mode, tmp_path, api, redis_server
):
    allowed = 10
    api.configure(quota=allowed)
    env = base_env(tmp_path, api)
    workers = None
    if mode == "distributed":
        env["ASKBATCH_BROKER_URL"] = fresh_db(redis_server.url, 9)
        workers = start_workers(env, 2, tmp_path, concurrency=CONCURRENCY)
    try:
        first = run(tmp_path, env, "--provider", "chat")
        assert first.code == 3, first.stderr
        assert "a spending limit — yours or the account's — stopped the job" in first.stderr
        assert "insufficient_quota" in first.stderr
        rows = read_rows(first.output)
        statuses = [r["status"] for r in rows]
        assert statuses.count("completed") == allowed, statuses
        assert statuses.count("pending") == N - allowed and "failed" not in statuses
        pending = [r for r in rows if r["status"] == "pending"]
        assert all("out of credit or quota" in r["error"] for r in pending)
        # Never retried: the refused requests are at most one per thread in flight.
        in_flight = CONCURRENCY * (2 if workers else 1)
        assert api.stats()["errors"].get("429", 0) <= in_flight
        assert sent(api) <= allowed + in_flight

        api.configure(quota=0)  # credit added
        job = job_of(first.stderr)
        again = askbatch(["resume", job, "--overwrite"], env, first.output)
        assert again.code == 0, again.stderr
        assert [r["status"] for r in read_rows(first.output)] == ["completed"] * N
        assert sorted(asked(api).values()) == [1] * N, "each row answered exactly once"
    finally:
        if workers:
            workers.stop()
            assert API_KEY not in workers.log_text()


def test_x_should_retry_false_is_honoured(tmp_path, api):
    rows = [["r0", "Overloaded [[noretry]]"]]
    path = write_csv(tmp_path / "sheet.csv", ["id", "question"], rows)
    out = tmp_path / "out.csv"
    done = askbatch(
        ["run", str(path), "-o", str(out), "--provider", "chat"], base_env(tmp_path, api), out
    )
    assert done.code == 1, done.stderr
    (row,) = read_rows(out)
    assert (row["status"], row["attempts"]) == ("failed", "1"), row
    assert api.stats()["requests"]["chat"] == 1


def test_a_retry_after_past_the_row_timeout_fails_the_row_at_once(tmp_path, api):
    rows = [["r0", "Wait for me [[429:1:300]]"]]
    path = write_csv(tmp_path / "sheet.csv", ["id", "question"], rows)
    out = tmp_path / "out.csv"
    done = askbatch(
        ["run", str(path), "-o", str(out), "--provider", "chat", "--timeout", "20"],
        base_env(tmp_path, api),
        out,
        timeout=60,
    )
    assert done.code == 1, done.stderr
    (row,) = read_rows(out)
    assert row["status"] == "failed" and "asked to wait 300s" in row["error"], row
    assert (row["attempts"], api.stats()["requests"]["chat"]) == ("1", 1)
    assert float(row["latency_s"]) < 10
