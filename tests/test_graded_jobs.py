"""Graded worksheets end to end (jobs/grade.py, jobs/judge.py): `askbatch run` on a sheet with
an answer key through the real CLI and the API double, the score in the summary, `status`
and `report`, the judge on free-text rows with scripted verdicts, resume, --batch, threads
and structured answers."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import askbatch, base_env, write_csv

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
