"""Issue 3 end to end: threads across rows, assistant profiles, function tools and structured
answers, on each provider, through the real CLI and the API double."""

from __future__ import annotations

import json

import pytest

from tests.conftest import askbatch, base_env, write_csv
from tests.double.expect import (
    answer_for,
    final_answer,
    structured_answer,
    tool_round_usage,
    usage_for,
)

PROVIDERS = ["responses", "chat", "assistants"]


def run(tmp_path, api, args, rows, header=("id", "thread", "question"), extra_env=None):
    env = base_env(tmp_path, api)
    env.update(extra_env or {})
    sheet = write_csv(tmp_path / "sheet.csv", list(header), rows)
    out = tmp_path / "out.csv"
    return askbatch(["run", str(sheet), "-o", str(out), *args], env, out)


THREADED = [
    ["t1", "A", "alpha one"],
    ["u1", "", "lonely question"],
    ["t2", "B", "beta one"],
    ["t3", "A", "alpha two"],
    ["t4", "B", "beta two"],
    ["t5", "A", "alpha three"],
]


def check_threads(result) -> None:
    assert result.code == 0, result.stderr
    rows = result.rows()
    assert [r["id"] for r in rows] == [r[0] for r in THREADED], "input order kept"
    history: dict[str, list[str]] = {}
    for (_rid, thread, question), row in zip(THREADED, rows, strict=True):
        prior = history.setdefault(thread or row["id"], [])
        answer = answer_for(question, 1 + len(prior) // 2)
        assert row["answer"] == answer, "each turn sees the earlier turns of its thread"
        prompt, completion = usage_for([*prior, question], answer)
        assert (int(row["prompt_tokens"]), int(row["completion_tokens"])) == (prompt, completion)
        prior += [question, answer]
    by_thread: dict[str, set[str]] = {}
    for src, row in zip(THREADED, rows, strict=True):
        by_thread.setdefault(src[1] or src[0], set()).add(row["thread_id"])
    assert all(len(ids) == 1 for ids in by_thread.values()), "one thread id per group"
    assert len({next(iter(ids)) for ids in by_thread.values()}) == 3
    assert len({r["run_id"] for r in rows}) == len(rows), "each turn its own run"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_threads_embedded(provider, tmp_path, api):
    check_threads(run(tmp_path, api, ["--provider", provider], THREADED))


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_threads_distributed(provider, tmp_path, api, workers, redis_server):
    result = run(
        tmp_path, api, ["--provider", provider], THREADED,
        extra_env={"ASKBATCH_BROKER_URL": redis_server.url},
    )  # fmt: skip
    check_threads(result)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_failed_turn_skips_the_rest_of_its_thread(provider, tmp_path, api):
    rows = [["s1", "A", "first"], ["s2", "A", "second [[fail]]"], ["s3", "A", "third"],
            ["o1", "B", "other thread"]]  # fmt: skip
    got = run(tmp_path, api, ["--provider", provider], rows).rows()
    assert [r["status"] for r in got] == ["completed", "failed", "skipped", "completed"]
    assert "row 2" in got[2]["error"] and "failed" in got[2]["error"]
    assert got[2]["thread_id"] == got[0]["thread_id"] and got[2]["prompt_tokens"] == "0"
    assert api.stats()["questions"].get("third") is None, "the skipped turn was not sent"

    again = run(tmp_path, api, ["--provider", provider, "--continue-on-error", "--overwrite"], rows)
    got = again.rows()
    assert [r["status"] for r in got] == ["completed", "failed", "completed", "completed"]
    assert got[2]["thread_id"] == got[0]["thread_id"]


TOOLS_PROFILE = """
model = "profile-model"
[[tools]]
function = "worker.builtin_tools:evaluate"
description = "calculator"
parameters = { type = "object", properties = { expression = { type = "string" } } }
[[tools]]
function = "tests.tools_for_tests:boom"
"""


TOOL_ARGS = '{"expression": "6*7"}'
# id, question, model: a call, a tool that raises, one that loops (max_tool_rounds 2), none
TOOL_ROWS = [
    ["1", f"six times seven [[call:evaluate:{TOOL_ARGS}]]", ""],
    ["2", "break [[call:boom]]", "row-model"],
    ["3", 'loop [[call:evaluate:{"expression": "1+1"}]] [[callagain]]', ""],
    ["4", "no tools needed", ""],
]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_function_tool_rounds(provider, tmp_path, api):
    profile = tmp_path / "tools.toml"
    profile.write_text(TOOLS_PROFILE)
    args, rows = TOOL_ARGS, TOOL_ROWS
    result = run(
        tmp_path, api, ["--provider", provider, "--assistant", str(profile)], rows,
        header=("id", "question", "model"), extra_env={"ASKBATCH_MAX_TOOL_ROUNDS": "2"},
    )  # fmt: skip
    assert result.code == 1, result.stderr
    calc, broke, loop, plain = result.rows()

    q = rows[0][1]
    answer = final_answer(q, 1, outputs=["42"])
    assert (calc["status"], calc["answer"], calc["tool_calls"]) == (
        "completed",
        answer,
        "evaluate x1",
    )
    round1 = tool_round_usage([q], [args])
    final = usage_for([q, args, "42"], answer)
    assert int(calc["prompt_tokens"]) == round1[0] + final[0], "usage sums every round"
    assert int(calc["completion_tokens"]) == round1[1] + final[1]
    assert calc["askbatch_model"] == "profile-model", "input has a model column: ours is renamed"

    error_output = json.dumps({"error": "RuntimeError: the tool broke"})
    assert broke["status"] == "completed" and broke["tool_calls"] == "boom x1"
    assert broke["answer"] == final_answer(rows[1][1], 1, outputs=[error_output])
    assert "tool boom: RuntimeError: the tool broke" in broke["error"]
    assert broke["askbatch_model"] == "row-model", "a row's model cell overrides the profile"

    assert loop["status"] == "failed" and "after 2 rounds" in loop["error"]
    assert loop["tool_calls"] == "evaluate x2"

    assert (plain["status"], plain["tool_calls"]) == ("completed", "")


SCHEMA = {
    "type": "object",
    "properties": {
        "problem": {"type": "string"},
        "difficulty": {"type": "string", "enum": ["easy", "hard"]},
        "score": {"type": "integer"},
    },
    "required": ["problem", "difficulty", "score"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_answers_become_columns(provider, tmp_path, api):
    profile = tmp_path / "schema.toml"
    (tmp_path / "problem.json").write_text(json.dumps(SCHEMA))
    profile.write_text("[response_format]\nname = 'problem'\nschema_file = 'problem.json'\n")
    rows = [["1", "P", "make a problem"], ["2", "P", "another, harder"],
            ["3", "", "bad [[badjson]]"], ["4", "", "wrong [[wrongschema]]"]]  # fmt: skip
    result = run(tmp_path, api, ["--provider", provider, "--assistant", str(profile)], rows)
    assert result.code == 1, result.stderr
    got = result.rows()
    assert list(got[0])[-3:] == ["answer.problem", "answer.difficulty", "answer.score"]
    for (_id, _t, question), row, turn in zip(rows[:2], got[:2], (1, 2), strict=True):
        expected = structured_answer(SCHEMA, question, turn)
        assert row["status"] == "completed", row
        assert json.loads(row["answer"]) == expected
        assert row["answer.problem"] == expected["problem"]
        assert row["answer.difficulty"] == "easy" and row["answer.score"] == str(turn)
    bad, wrong = got[2], got[3]
    assert bad["status"] == "failed" and "not JSON" in bad["error"] and bad["answer.problem"] == ""
    assert wrong["status"] == "failed" and "does not match the schema" in wrong["error"]


def test_sample_profile_and_followups_run_on_chat(tmp_path, api):
    """The data/ samples as docs/profiles.md shows them (the double answers every model)."""
    from tests.conftest import ROOT

    env = base_env(tmp_path, api)
    out = tmp_path / "followups.answers.csv"
    result = askbatch(
        ["run", str(ROOT / "data" / "followups.csv"), "-o", str(out), "--provider", "chat",
         "--assistant", str(ROOT / "data" / "practice.toml")], env, out,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    rows = result.rows()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"completed"}
    assert all(r["answer.problem"] and r["answer.difficulty"] == "easy" for r in rows)
    assert len({r["thread_id"] for r in rows}) == 3
