"""End to end: the real `askbatch` command, the real SDK over HTTP to the API double, and in
distributed mode a real redis-server with real worker processes. Every output cell is checked
against what the double is known to answer."""

from __future__ import annotations

import re

import pytest

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.double.expect import answer_for, partial_answer, usage_for

PROVIDERS = ["responses", "chat", "assistants"]
THREAD_ID = {"responses": r"conv_\w+", "chat": r"chat_[0-9a-f]{32}", "assistants": r"thread_\w+"}
RUN_ID = {"responses": r"resp_\w+", "chat": r"chatcmpl-\w+", "assistants": r"run_\w+"}
MODEL = "test-model-1"

# (id, thread, question, note) — note passes through untouched.
ROWS = [
    ["a1", "", "다음의 방정식을 풀어 주세요: '3x + 11 = 14', 도와주실 수 있나요?", "한국어, comma"],
    ["a2", "", 'He said "x, y"\nthen left — 🙂', "quotes+newline"],
    ["a3", "", "What is 2 + 2? [[429:2]]", "two 429s then ok"],
    ["a4", "", "Integrate x dx [[500:1]]", "one 500 then ok"],
    ["a5", "", "   ", "blank question"],
    ["a6", "t1", "Solve 2x = 6.", "thread turn 1"],
    ["a7", "", "This will not work [[fail]]", "failed run"],
    ["a8", "t1", "설명 감사합니다. 비슷한 문제를 하나 더 내 주세요.", "thread turn 2"],
    ["a9", "", "Write a long proof [[incomplete]]", "cut short"],
    ["a10", "", "=SUM(A1:A3) is a formula", "formula-looking question"],
]


def expected_rows(provider: str) -> dict[str, dict]:
    """What each row must say, computed from the double's own rules."""
    out = {}
    history: list[str] = []
    for rid, thread, question, _note in ROWS:
        if not question.strip():
            out[rid] = {"status": "skipped"}
            continue
        turn = 1 + len(history) // 2 if thread else 1
        prior = history if thread else []
        answer = answer_for(question, turn)
        prompt, completion = usage_for([*prior, question], answer)
        row = {"status": "completed", "answer": answer, "prompt": prompt, "completion": completion}
        if "[[429:2]]" in question:
            row["attempts"] = 3
        elif "[[500:1]]" in question:
            row["attempts"] = 2
        if "[[fail]]" in question:
            row = {"status": "failed"}
        if "[[incomplete]]" in question:
            row = {"status": "incomplete", "answer": partial_answer(answer)}
        if thread:
            history += [question, answer]
        out[rid] = row
    return out


def check_output(run, provider: str) -> None:
    assert run.code == 1, run.stderr  # some rows failed or were skipped: CSV written, exit 1
    rows = run.rows()
    assert [r["id"] for r in rows] == [r[0] for r in ROWS], "one row out per row in, in order"
    expected = expected_rows(provider)
    for src, row in zip(ROWS, rows, strict=True):
        rid, thread, question, note = src
        assert (row["thread"], row["question"], row["note"]) == (thread, question, note)
        exp = expected[rid]
        assert row["status"] == exp["status"], (rid, row)
        if exp["status"] == "skipped":
            assert row["error"] and row["prompt_tokens"] == "0" and row["run_id"] == ""
            continue
        assert re.fullmatch(THREAD_ID[provider], row["thread_id"]), row
        assert float(row["latency_s"]) > 0
        if exp["status"] == "failed":
            # chat has no failed run: the server refuses the request (HTTP 400), no run id.
            assert ("HTTP 400" in row["error"]) == (provider == "chat"), row
            assert row["error"] and row["answer"] == "", row
            assert int(row["attempts"]) == 1  # a failed run or a 400 is not retried
            continue
        assert re.fullmatch(RUN_ID[provider], row["run_id"]), row
        assert row["answer"] == exp["answer"], row
        if exp["status"] == "incomplete":
            assert "incomplete" in row["error"]
            continue
        assert row["error"] == ""
        assert row["model"] == MODEL
        assert int(row["prompt_tokens"]) == exp["prompt"], row
        assert int(row["completion_tokens"]) == exp["completion"], row
        assert int(row["total_tokens"]) == exp["prompt"] + exp["completion"]
        assert int(row["attempts"]) == exp.get("attempts", 1), row
    by_id = {r["id"]: r for r in rows}
    assert by_id["a6"]["thread_id"] == by_id["a8"]["thread_id"], "one thread per group"
    assert len({r["thread_id"] for r in rows if r["thread_id"]}) == 8
    assert API_KEY not in run.output.read_text(encoding="utf-8-sig") + run.stderr + run.stdout


@pytest.fixture
def sheet(tmp_path):
    return write_csv(tmp_path / "sheet.csv", ["id", "thread", "question", "note"], ROWS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_embedded(provider, sheet, tmp_path, api):
    env = base_env(tmp_path, api)
    out = tmp_path / "out.csv"
    run = askbatch(
        [
            "run",
            str(sheet),
            "-o",
            str(out),
            "--provider",
            provider,
            "--model",
            MODEL,
            "--concurrency",
            "4",
        ],
        env,
        out,
    )
    check_output(run, provider)
    assert "job " in run.stderr and "10 of 10 rows" in run.stderr


@pytest.mark.parametrize("provider", PROVIDERS)
def test_distributed(provider, sheet, tmp_path, api, workers, redis_server):
    env = base_env(tmp_path, api)
    env["ASKBATCH_BROKER_URL"] = redis_server.url
    out = tmp_path / "out.csv"
    run = askbatch(
        ["run", str(sheet), "-o", str(out), "--provider", provider, "--model", MODEL], env, out
    )
    check_output(run, provider)
    assert "on workers via redis://" in run.stderr
    # No stored result holds the key either.
    r = redis_server.client()
    for key in r.scan_iter("askbatch:*"):
        kind = r.type(key)
        blob = (
            str(r.hgetall(key)) if kind == "hash" else str(r.get(key)) if kind == "string" else ""
        )
        assert API_KEY not in blob


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_few_hundred_rows_with_faults(provider, mode, tmp_path, api, request):
    """300 rows while the API answers 20 % 429s and 5 % 500s: complete, in order, exact usage."""
    env = base_env(tmp_path, api)
    if mode == "distributed":
        request.getfixturevalue("workers")
        env["ASKBATCH_BROKER_URL"] = request.getfixturevalue("redis_server").url
    api.configure(rate_429=0.2, rate_500=0.05, seed=7)
    rows = [[f"r{i}", f"질문 {i}: what is {i} + {i}?"] for i in range(300)]
    sheet = write_csv(tmp_path / "big.csv", ["id", "question"], rows)
    out = tmp_path / "big.answers.csv"
    run = askbatch(
        [
            "run",
            str(sheet),
            "--provider",
            provider,
            "--model",
            MODEL,
            "--max-attempts",
            "12",
            "--concurrency",
            "16",
        ],
        env,
        out,
    )
    assert run.code == 0, run.stderr
    got = run.rows()
    assert [r["id"] for r in got] == [r[0] for r in rows]
    for (_rid, question), row in zip(rows, got, strict=True):
        answer = answer_for(question, 1)
        prompt, completion = usage_for([question], answer)
        assert (row["status"], row["answer"]) == ("completed", answer), row
        assert (int(row["prompt_tokens"]), int(row["completion_tokens"])) == (prompt, completion)
    retries = sum(int(r["attempts"]) - 1 for r in got)
    stats = api.stats()
    assert stats["status_429"] + stats["status_500"] > 0
    assert retries == stats["status_429"] + stats["status_500"], "every retry is counted"
    assert sorted(stats["questions"].values()) == [1] * 300, "no question was answered twice"


def test_bad_input_exits_2_and_sends_nothing(tmp_path, api):
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "s.csv", ["id", "Question "], [["1", "hi"]])
    run = askbatch(["run", str(sheet)], env, tmp_path / "s.answers.csv")
    assert run.code == 2
    assert "question" in run.stderr and '"Question "' in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "s.answers.csv").exists()
    assert sum(api.stats()["requests"].values()) == 0


def test_missing_key_says_how_to_set_one(tmp_path, api):
    env = base_env(tmp_path, api)
    del env["OPENAI_API_KEY"], env["OPENAI_BASE_URL"]
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    run = askbatch(["run", str(sheet)], env, tmp_path / "s.answers.csv")
    assert run.code == 2
    assert "OPENAI_API_KEY" in run.stderr and ".env" in run.stderr and "--base-url" in run.stderr
    assert not (tmp_path / "s.answers.csv").exists()
    assert sum(api.stats()["requests"].values()) == 0


def test_all_completed_exits_0_with_default_output_and_instructions(tmp_path, api):
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "w.csv", ["question"], [["one"], ["two"]])
    out = tmp_path / "w.answers.csv"
    run = askbatch(
        ["run", str(sheet), "--provider", "chat", "--instructions", "Be brief."], env, out
    )
    assert run.code == 0, run.stderr
    rows = run.rows()
    assert list(rows[0])[:2] == ["question", "status"], "input columns unchanged, then results"
    for q, row in zip(["one", "two"], rows, strict=True):
        answer = answer_for(q, 1)
        assert int(row["prompt_tokens"]) == usage_for(["Be brief.", q], answer)[0]
    again = askbatch(["run", str(sheet)], env, out)
    assert again.code == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize(
    ("marker", "status", "error"),
    [
        ("[[expired]]", "expired", "expired"),
        ("[[cancelled]]", "cancelled", "cancelled"),
        ("[[requires_action]]", "failed", "requires_action"),
        ("[[never]]", "expired", "row timeout"),
    ],
)
def test_assistants_run_statuses(marker, status, error, tmp_path, api):
    env = base_env(tmp_path, api)
    sheet = write_csv(tmp_path / "s.csv", ["question"], [[f"q {marker}"], ["fine"]])
    out = tmp_path / "o.csv"
    run = askbatch(
        ["run", str(sheet), "-o", str(out), "--provider", "assistants", "--timeout", "3"], env, out
    )
    assert run.code == 1, run.stderr
    bad, good = run.rows()
    assert (bad["status"], good["status"]) == (status, "completed"), bad
    assert error in bad["error"], bad
    if marker in ("[[never]]", "[[requires_action]]"):
        assert api.stats()["requests"].get("run_cancel", 0) >= 1, "the run was cancelled"
