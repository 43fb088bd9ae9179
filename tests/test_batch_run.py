"""`askbatch run --batch` end to end: the real CLI from the runtime environment, the real
openai SDK, the double's Files and Batches API. Threads in rounds through each provider, the
same cells as a synchronous run, files split at the line limit, a failing line, a retryable
line asked again, a batch that expires once, and the providers that cannot batch."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.conftest import askbatch, base_env, write_csv
from tests.double.fixture import BATCH_OPTIONS
from tests.jobtools import JOB_ID, asked
from tests.test_threads_tools import THREADED

# What may differ between a synchronous and a batch run of the same sheet.
DIFFERENT = {"thread_id", "run_id", "latency_s", "service_tier", "cost_usd", "attempts"}


@pytest.fixture
def batch_api(api):
    api.configure(**BATCH_OPTIONS)
    yield api
    api.configure(**BATCH_OPTIONS)


def run(tmp_path, api, args, rows, name="sheet", header=("id", "thread", "question"), env=None):
    environment = base_env(tmp_path, api)
    environment.update(env or {})
    sheet = write_csv(tmp_path / f"{name}.csv", list(header), rows)
    out = tmp_path / f"{name}.out.csv"
    return askbatch(["run", str(sheet), "-o", str(out), *args], environment, out)


def status(tmp_path, api, job_id):
    return askbatch(["status", job_id], base_env(tmp_path, api), tmp_path / "x")


@pytest.mark.parametrize("provider", ["responses", "chat", "chat-ogx"])
def test_threads_in_rounds_give_the_cells_of_a_synchronous_run(tmp_path, batch_api, provider):
    # chat-ogx: the Batch API as OGX runs it (tests/double/batchrun.py, `batch_ogx`).
    provider, _, ogx = provider.partition("-")
    # The double billed as OpenAI (a price file's [base_urls]), so both runs have a price.
    prices = tmp_path / "prices.toml"
    prices.write_text(f'[base_urls]\n"{batch_api.base_url}" = "openai"\n')
    flags = ["--provider", provider, "--prices", str(prices)]
    sync = run(tmp_path, batch_api, flags, THREADED, name="sync")
    assert sync.code == 0, sync.stderr
    batch_api.reset()
    batch_api.configure(batch_ogx=int(bool(ogx)))
    batched = run(tmp_path, batch_api, [*flags, "--batch"], THREADED)
    assert batched.code == 0, batched.stderr
    stats = batch_api.stats()
    # Three rounds: turn 1 of A, B and the lone row; turn 2 of A and B; turn 3 of A.
    assert stats["batches"].get("completed") == 3, stats["batches"]
    assert all(n == 1 for n in asked(batch_api).values()), "every line asked once"
    for s, b in zip(sync.rows(), batched.rows(), strict=True):
        assert {k: v for k, v in s.items() if k not in DIFFERENT} == {
            k: v for k, v in b.items() if k not in DIFFERENT
        }
        assert b["service_tier"] == "batch" and b["run_id"] and b["attempts"] == "1"
        # Half price: genai-prices' batch price for gpt-5-mini (to the 9th decimal).
        assert Decimal(s["cost_usd"]) > 0
        assert abs(2 * Decimal(b["cost_usd"]) - Decimal(s["cost_usd"])) <= Decimal("2e-9")
    rows = batched.rows()
    assert len({r["thread_id"] for r in rows}) == 3, "one askbatch thread id per thread"
    assert rows[0]["thread_id"] == rows[3]["thread_id"] == rows[5]["thread_id"]
    job = JOB_ID.search(batched.stderr).group(1)
    shown = status(tmp_path, batch_api, job)
    assert shown.code == 0
    assert shown.stdout.count("completed, 0 failed of") == 3, shown.stdout
    assert "batch_" in shown.stdout


def test_files_split_at_the_line_limit(tmp_path, batch_api):
    rows = [[str(i), "", f"question {i}"] for i in range(7)]
    result = run(tmp_path, batch_api, ["--batch"], rows, env={"ASKBATCH_BATCH_MAX_LINES": "3"})
    assert result.code == 0, result.stderr
    stats = batch_api.stats()
    assert stats["batches"].get("completed") == 3, stats["batches"]
    assert stats["files"].get("batch") == 3, stats["files"]
    assert [r["status"] for r in result.rows()] == ["completed"] * 7
    assert [r["id"] for r in result.rows()] == [str(i) for i in range(7)], "input order"
    assert "3 batches out" in result.stderr, "the progress line says what the job waits on"


def test_a_failing_line_and_a_retryable_one(tmp_path, batch_api):
    rows = [
        ["1", "", "fine question"],
        ["2", "", "refused [[400]]"],
        ["3", "", "busy at first [[429:1]]"],
        ["4", "", "down at first [[500:1]]"],
    ]
    result = run(tmp_path, batch_api, ["--batch"], rows)
    assert result.code == 1, result.stderr
    out = {r["id"]: r for r in result.rows()}
    assert out["1"]["status"] == "completed" and out["1"]["attempts"] == "1"
    assert out["2"]["status"] == "failed" and out["2"]["error"].startswith("400: ")
    assert "\n" not in out["2"]["error"]
    for rid in ("3", "4"):
        assert out[rid]["status"] == "completed", out[rid]
        assert out[rid]["attempts"] == "2", "asked again in a later batch"
    assert batch_api.stats()["batches"].get("completed") == 2


def test_a_retryable_line_gives_up_after_max_attempts(tmp_path, batch_api):
    rows = [["1", "", "always busy [[429:99]]"]]
    result = run(tmp_path, batch_api, ["--batch", "--max-attempts", "2"], rows)
    assert result.code == 1
    (row,) = result.rows()
    assert row["status"] == "failed" and "429" in row["error"] and row["attempts"] == "2"


def test_a_batch_that_expires_once(tmp_path, batch_api):
    batch_api.configure(batch_expire_next=1)
    rows = [[str(i), "", f"question {i}"] for i in range(6)]
    result = run(tmp_path, batch_api, ["--batch"], rows)
    assert result.code == 0, result.stderr
    assert [r["status"] for r in result.rows()] == ["completed"] * 6
    stats = batch_api.stats()
    assert stats["batches"].get("expired") == 1 and stats["batches"].get("completed") == 1
    assert all(n == 1 for n in asked(batch_api).values()), "finished lines kept, not re-asked"
    attempts = sorted(r["attempts"] for r in result.rows())
    assert "1" in attempts and "2" in attempts, "the unfinished half went again"
    job = JOB_ID.search(result.stderr).group(1)
    assert ": expired, " in status(tmp_path, batch_api, job).stdout


@pytest.mark.parametrize("provider", ["assistants", "local"])
def test_providers_without_a_batch_route_are_refused(tmp_path, batch_api, provider):
    result = run(tmp_path, batch_api, ["--provider", provider, "--batch"], [["1", "", "q"]])
    assert result.code == 2
    assert "--batch works with --provider responses" in result.stderr
    assert "Traceback" not in result.stderr and not result.output.exists()
    assert not batch_api.stats()["batches"], "nothing was sent"


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_function_tools_run_in_rounds_as_a_synchronous_run_does(tmp_path, batch_api, provider):
    from tests.test_threads_tools import TOOL_ROWS, TOOLS_PROFILE

    profile = tmp_path / "tools.toml"
    profile.write_text(TOOLS_PROFILE)
    rows = TOOL_ROWS
    header = ("id", "question", "model")
    env = {"ASKBATCH_MAX_TOOL_ROUNDS": "2"}
    flags = ["--provider", provider, "--assistant", str(profile)]
    sync = run(tmp_path, batch_api, flags, rows, name="sync", header=header, env=env)
    batch_api.reset()
    batched = run(tmp_path, batch_api, [*flags, "--batch"], rows, header=header, env=env)
    assert sync.code == batched.code == 1, batched.stderr
    got = batched.rows()
    calc, broke, loop, plain = got
    assert (calc["status"], calc["tool_calls"]) == ("completed", "evaluate x1")
    assert broke["tool_calls"] == "boom x1" and "the tool broke" in broke["error"]
    assert loop["status"] == "failed" and "after 2 rounds" in loop["error"]
    assert loop["tool_calls"] == "evaluate x2" and plain["status"] == "completed"
    # Every row that ends where the synchronous run ends has its cells, usage of every
    # round included; the looping row's synchronous responses run makes one more request,
    # without tools, and keeps its answer: the batch row just fails.
    same = DIFFERENT | {"answer", "prompt_tokens", "completion_tokens", "total_tokens"}
    for s, b in zip(sync.rows(), got, strict=True):
        skip = same if s["id"] == "3" and provider == "responses" else DIFFERENT
        assert {k: v for k, v in s.items() if k not in skip} == {
            k: v for k, v in b.items() if k not in skip
        }
    stats = batch_api.stats()
    # Round 1: four lines; round 2: rows 1-3 with their tools' outputs; round 3: row 3 again.
    # Row 2 asks another model, so rounds 1 and 2 are two files (two batches) each.
    assert stats["batches"].get("completed") == 5, stats["batches"]
    assert stats["batch_repeats"] == 0


def test_the_enqueued_token_limit_waits_and_goes_again_smaller(tmp_path, batch_api):
    # About 6 input tokens a line: a file of 4 lines (24) is over the limit on its own.
    batch_api.configure(batch_enqueued_tokens=15)
    rows = [[str(i), "", f"question {i}"] for i in range(8)]
    result = run(tmp_path, batch_api, ["--batch"], rows, env={"ASKBATCH_BATCH_MAX_LINES": "4"})
    assert result.code == 0, result.stderr
    assert [r["status"] for r in result.rows()] == ["completed"] * 8
    assert all(n == 1 for n in asked(batch_api).values()) and len(asked(batch_api)) == 8
    stats = batch_api.stats()["batches"]
    assert stats.get("failed", 0) >= 1 and stats.get("completed", 0) >= 4, stats
    job = JOB_ID.search(result.stderr).group(1)
    shown = status(tmp_path, batch_api, job).stdout
    assert "token_limit_exceeded" in shown
    assert "completed, 0 failed of 2" in shown, "went again in batches half the size"


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_structured_answers_and_a_model_per_row_as_a_synchronous_run(tmp_path, batch_api, provider):
    from tests.test_threads_tools import SCHEMA

    (tmp_path / "problem.json").write_text(json.dumps(SCHEMA))
    profile = tmp_path / "schema.toml"
    profile.write_text("[response_format]\nname = 'problem'\nschema_file = 'problem.json'\n")
    rows = [
        ["1", "P", "make a problem", ""],
        ["2", "P", "another, harder", ""],
        ["3", "", "for the other model", "gpt-4o-mini"],
        ["4", "", "wrong [[wrongschema]]", ""],
    ]
    header = ("id", "thread", "question", "model")
    flags = ["--provider", provider, "--assistant", str(profile)]
    sync = run(tmp_path, batch_api, flags, rows, name="sync", header=header)
    batch_api.reset()
    batched = run(tmp_path, batch_api, [*flags, "--batch"], rows, header=header)
    assert sync.code == batched.code == 1, batched.stderr
    for s, b in zip(sync.rows(), batched.rows(), strict=True):
        assert {k: v for k, v in s.items() if k not in DIFFERENT} == {
            k: v for k, v in b.items() if k not in DIFFERENT
        }
    got = batched.rows()
    assert got[0]["answer.difficulty"] == "easy" and got[2]["model"].startswith("gpt-4o-mini")
    assert got[3]["status"] == "failed" and "does not match the schema" in got[3]["error"]
    # Round 1 holds two models: a file (and a batch) each; round 2 the thread's second turn.
    assert batch_api.stats()["batches"].get("completed") == 3


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_a_failed_turn_skips_the_rest_of_its_thread(tmp_path, batch_api, provider):
    rows = [["s1", "A", "first"], ["s2", "A", "second [[fail]]"], ["s3", "A", "third"],
            ["s4", "A", "fourth"], ["o1", "B", "other thread"]]  # fmt: skip
    flags = ["--provider", provider, "--batch"]
    got = run(tmp_path, batch_api, flags, rows).rows()
    assert [r["status"] for r in got] == ["completed", "failed", "skipped", "skipped", "completed"]
    assert "row 2" in got[2]["error"] and got[3]["thread_id"] == got[0]["thread_id"]
    assert "third" not in asked(batch_api) and "fourth" not in asked(batch_api)
    batch_api.reset()
    again = run(tmp_path, batch_api, [*flags, "--continue-on-error"], rows, name="again").rows()
    assert [r["status"] for r in again] == ["completed", "failed", *["completed"] * 3]
    # The later turns carry the turns that completed, as a synchronous chat thread does.
    assert again[2]["answer"].startswith("[turn 2]") and again[3]["answer"].startswith("[turn 3]")
