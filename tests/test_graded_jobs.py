"""Graded worksheets end to end (jobs/grade.py, jobs/judge.py): `askbatch run` on a sheet with
an answer key through the real CLI and the API double, the score in the summary, `status`
and `report`, the judge on free-text rows with scripted verdicts, resume, --batch, threads
and structured answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import askbatch, base_env, write_csv
from tests.jobtools import JOB_ID

# The double answers "[turn N] answer: QUESTION": a question ending in an "Answer:" line
# makes that line the answer's final answer. 40 keyed rows, 3 of them answered wrong, and
# 2 rows without a key.
WRONG = {"r07": ("7/3", "2 2/3"), "r19": ("12", "13 cm"), "r33": ("x = 2 or x = 3", "x = 2")}


def worksheet(tmp_path: Path) -> Path:
    forms = [
        ("4/3", "1 1/3"),
        ("4/3", "1.33"),
        ("3, 2", "x = 2 or x = 3"),
        ("-3", "x = −3"),
        ("7", "답: 7"),
        ("25%", "0.25"),
        ("y = 2x + 1", "2x - y + 1 = 0"),
        ("12", "12 cm"),
    ]
    rows = []
    for n in range(1, 41):
        rid = f"r{n:02d}"
        key, said = WRONG.get(rid) or forms[n % len(forms)]
        thread = "t1" if n <= 4 else ""
        rows.append(
            [rid, thread, f"Problem {n}.\nAnswer: {said}", key, "easy" if n % 2 else "hard"]
        )
    rows.append(["r41", "", "What is 1 + 1?\nAnswer: 2", "", "easy"])
    rows.append(["r42", "", "Name a colour.\nAnswer: blue", "", "easy"])
    header = ["id", "thread", "question", "expected", "difficulty"]
    return write_csv(tmp_path / "graded.csv", header, rows)


def test_a_keyed_sheet_ends_with_its_score_and_its_wrong_rows(tmp_path, api):
    sheet = worksheet(tmp_path)
    out = tmp_path / "graded.answers.csv"
    env = base_env(tmp_path, api)
    run = askbatch(["run", str(sheet), "--provider", "chat", "-q"], env, out)
    assert run.code == 0, run.stderr
    assert "37 of 40 graded rows correct (92.5 %)" in run.stderr, run.stderr
    listed = run.stderr.split("wrong rows:")[1]
    for rid, (key, said) in WRONG.items():
        line = (
            rf"row \d+ \(id {rid}\): Problem .*key: {re.escape(key)} \| answer: .*{re.escape(said)}"
        )
        assert re.search(line, listed), listed
    rows = {r["id"]: r for r in run.rows()}
    assert list(rows["r01"])[-2:] == ["correct", "grade_note"], "after askbatch's columns"
    assert [rows[r]["correct"] for r in WRONG] == ["no", "no", "no"]
    assert rows["r07"]["grade_note"] == "final answer 2 2/3 ≠ key 7/3"
    assert rows["r19"]["grade_note"] == "final answer 13 cm ≠ key 12"
    assert rows["r02"]["correct"] == "yes" and rows["r02"]["thread"] == "t1", "a thread's turn"
    assert rows["r02"]["grade_note"] == "final answer x = 2 or x = 3 = key 3, 2"
    assert sum(r["correct"] == "yes" for r in rows.values()) == 37
    assert rows["r41"]["correct"] == "" and rows["r41"]["grade_note"] == "not graded: no key"

    # status and report say the same; report grades again from the file, asking nothing.
    status = askbatch(["status", _job_of(env)], env, out)
    assert "score: 37 of 40 graded rows correct (92.5 %)" in status.stdout, status.stdout
    requests = sent(api)
    html = tmp_path / "report.html"
    report = askbatch(
        ["report", str(out), "--expected", "expected", "--by", "difficulty", "--html", str(html)],
        env,
        out,
    )
    assert report.code == 0, report.stderr
    assert "37 of 40 graded rows correct (92.5 %)" in report.stdout
    assert sent(api) == requests, "report asks nothing"
    page = html.read_text()
    for chart in ("Right and wrong by model", "by thread", "by difficulty"):
        assert chart in page


def sent(api) -> int:
    return sum(api.stats()["requests"].values())


def _job_of(env: dict[str, str]) -> str:
    jobs = sorted((Path(env["ASKBATCH_STATE_DIR"]) / "jobs").glob("*.sqlite"))
    return jobs[-1].name.removesuffix(".sqlite")


def test_a_key_column_the_sheet_lacks_is_bad_input_before_anything_is_sent(tmp_path, api):
    sheet = worksheet(tmp_path)
    out = tmp_path / "out.csv"
    run = askbatch(
        ["run", str(sheet), "--expected", "key", "-o", str(out)], base_env(tmp_path, api), out
    )
    assert run.code == 2 and "Traceback" not in run.stderr
    assert "--expected key: the worksheet has no column 'key'" in run.stderr, run.stderr
    assert sent(api) == 0 and not out.exists()


FREE_TEXT = [
    ["f1", "Capital of France?\nAnswer: Paris", "Paris"],  # the key, word for word
    ["f2", "Capital of France?\nAnswer: The capital of France is Paris", "Paris"],
    ["f3", "Largest planet?\nAnswer: I would say Saturn [[false]]", "Jupiter"],
    ["f4", "What is 4/3 as a mixed number?\nAnswer: 1 1/3", "4/3"],  # maths: decided
    ["f5", "Capital of England?\nAnswer: Londres", "London"],  # one word each: decided
]


def test_the_judge_is_asked_only_what_the_key_does_not_decide_and_only_once(tmp_path, api):
    sheet = write_csv(tmp_path / "free.csv", ["id", "question", "expected"], FREE_TEXT)
    out = tmp_path / "free.answers.csv"
    env = base_env(tmp_path, api)

    plain = askbatch(["run", str(sheet), "--provider", "chat", "-o", str(out)], env, out)
    assert plain.code == 0, plain.stderr
    assert sent(api) == 5, "no judge unless one is asked for"
    rows = {r["id"]: r for r in plain.rows()}
    assert [rows[f]["correct"] for f in ("f1", "f2", "f3", "f4", "f5")] == [
        "yes",
        "",
        "",
        "yes",
        "no",
    ]
    assert rows["f2"]["grade_note"].endswith("--grade-with MODEL judges it")
    assert "grade_cost_usd" not in rows["f1"]

    args = ["run", str(sheet), "--provider", "chat", "--grade-with", "gpt-5-mini", "--overwrite"]
    run = askbatch([*args, "-o", str(out)], env, out)
    assert run.code == 0, run.stderr
    assert sent(api) == 5 + 5 + 2, "the judge saw f2 and f3 alone"
    assert "asking gpt-5-mini about 2 rows" in run.stderr
    rows = {r["id"]: r for r in run.rows()}
    assert [rows[f]["correct"] for f in ("f1", "f2", "f3", "f4", "f5")] == [
        "yes",
        "yes",
        "no",
        "yes",
        "no",
    ]
    assert rows["f2"]["grade_note"].startswith("judged by gpt-5-mini: reason: ")
    assert rows["f3"]["grade_note"].startswith("judged by gpt-5-mini: ")
    assert rows["f2"]["grade_cost_usd"] == "0.000000000", "a loopback server is free"
    assert rows["f1"]["grade_cost_usd"] == "" and rows["f4"]["grade_cost_usd"] == ""
    assert "3 of 5 graded rows correct (60 %)" in run.stderr, run.stderr
    assert "grading: 2 rows judged by the model" in run.stderr

    # The verdicts are stored: resume and collect grade again, and ask the judge nothing.
    job = JOB_ID.search(run.stderr)[1]
    again = askbatch(["resume", job, "--overwrite"], env, out)
    assert again.code == 0, again.stderr
    assert sent(api) == 12
    assert [r["correct"] for r in again.rows()] == ["yes", "yes", "no", "yes", "no"]
    report = askbatch(["report", str(out), "--expected", "expected"], env, out)
    assert "3 of 5 graded rows correct (60 %)" in report.stdout, "the judge's verdicts kept"


def test_a_batch_job_is_graded_and_its_judge_asked_at_once(tmp_path, api):
    sheet = write_csv(tmp_path / "b.csv", ["id", "thread", "question", "expected"], [
        ["b1", "t", "Turn one.\nAnswer: x = 4/3", "1 1/3"],
        ["b2", "t", "Turn two.\nAnswer: 1.3", "4/3"],
        ["b3", "", "Say it.\nAnswer: It is Paris, of course", "Paris"],
    ])  # fmt: skip
    out = tmp_path / "b.answers.csv"
    args = ["run", str(sheet), "--batch", "--grade-with", "gpt-5-mini", "-o", str(out)]
    run = askbatch(args, base_env(tmp_path, api), out)
    assert run.code == 0, run.stderr
    assert api.stats()["batches"].get("completed") == 2, "two rounds for the thread's turns"
    rows = run.rows()
    assert [r["service_tier"] for r in rows] == ["batch", "batch", "batch"]
    assert [r["correct"] for r in rows] == ["yes", "no", "yes"]
    assert rows[2]["grade_note"].startswith("judged by gpt-5-mini")
    assert "2 of 3 graded rows correct (66.7 %)" in run.stderr, run.stderr


STRUCTURED = """\
[response_format]
name = "worked"
[response_format.schema]
type = "object"
required = ["working", "value"]
properties.working = { type = "string" }
properties.value = { type = "integer" }
"""


def test_structured_answers_are_graded_on_the_field_named(tmp_path, api):
    # The double answers an integer field with the turn's number: 1, then 2 in a thread.
    profile = tmp_path / "p.toml"
    profile.write_text(STRUCTURED)
    sheet = write_csv(tmp_path / "s.csv", ["id", "thread", "question", "key"], [
        ["s1", "t", "first", "1"], ["s2", "t", "second", "3"], ["s3", "", "alone", ""],
    ])  # fmt: skip
    out = tmp_path / "s.answers.csv"
    env = base_env(tmp_path, api)
    base = ["run", str(sheet), "--assistant", str(profile), "--expected", "key", "-o", str(out)]
    bad = askbatch([*base, "--grade-field", "nope"], env, out)
    assert bad.code == 2 and "--grade-field nope: not a field of the answers" in bad.stderr
    assert sent(api) == 0
    run = askbatch([*base, "--grade-field", "value"], env, out)
    assert run.code == 0, run.stderr
    rows = run.rows()
    assert [r["answer.value"] for r in rows] == ["1", "2", "1"]
    assert [r["correct"] for r in rows] == ["yes", "no", ""]
    assert rows[1]["grade_note"] == "final answer 2 ≠ key 3"
    assert "1 of 2 graded rows correct (50 %)" in run.stderr


def test_a_distributed_job_is_graded_and_judged_on_the_workers(
    tmp_path, api, redis_server, workers
):
    sheet = write_csv(tmp_path / "free.csv", ["id", "question", "expected"], FREE_TEXT)
    out = tmp_path / "free.answers.csv"
    env = base_env(tmp_path, api)
    env["ASKBATCH_BROKER_URL"] = redis_server.url
    run = askbatch(
        ["run", str(sheet), "--provider", "chat", "--grade-with", "gpt-5-mini"], env, out
    )
    assert run.code == 0, run.stderr
    assert [r["correct"] for r in run.rows()] == ["yes", "yes", "no", "yes", "no"]
    assert sent(api) == 7
    status = askbatch(["status", JOB_ID.search(run.stderr)[1]], env, out)
    assert "score: 3 of 5 graded rows correct (60 %)" in status.stdout, status.stdout


def test_the_key_terms_come_from_flags_the_profile_or_the_expected_column(tmp_path):
    from jobs.grade import terms
    from jobs.intake import open_worksheet
    from worker.errors import ConfigError
    from worker.settings import Settings

    keyed = open_worksheet(
        write_csv(tmp_path / "k.csv", ["question", "expected", "key"], [["q", "1", "2"]])
    )
    plain = open_worksheet(write_csv(tmp_path / "p.csv", ["question"], [["q"]]))
    none = Settings()
    assert terms(none, keyed, load_profile_text(tmp_path, "")) == {
        "expected": "expected",
        "field": "",
        "judge": "",
    }
    assert terms(none, plain, load_profile_text(tmp_path, "")) == {}, "no key, no grading"
    table = '[grade]\nexpected = "key"\nmodel = "gpt-5-mini"\n'
    assert terms(none, keyed, load_profile_text(tmp_path, table)) == {
        "expected": "key", "field": "", "judge": "gpt-5-mini"}  # fmt: skip
    flags = none.with_(expected="expected", grade_with="m")
    assert terms(flags, keyed, load_profile_text(tmp_path, table))["judge"] == "m", "flags win"
    with pytest.raises(ConfigError, match="--grade-with grades against an answer key"):
        terms(none.with_(grade_with="m"), plain, load_profile_text(tmp_path, ""))
    with pytest.raises(ConfigError, match=r"grade should be a table of"):
        load_profile_text(tmp_path, "[grade]\njudge = 'm'\n")


def load_profile_text(tmp_path: Path, text: str):
    from worker.profile import load_profile

    path = tmp_path / "profile.toml"
    path.write_text(text)
    return load_profile(path)
