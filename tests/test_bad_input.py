"""Bad input at the command line: exit code 2 and one message that names the file, the row
and the column; nothing sent to the API (the double counts every request), nothing written
(no answers file, no temporary file, no job).

These call the real CLI entry point, `jobs.cli.main`, in this process: each case stops before
a job exists, so there is nothing a subprocess would add but start-up time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.jobtools import InProcess

CP949_ROWS = [["1", "다음 방정식을 푸세요: 3x + 11 = 14"], ["2", "설명 감사합니다"]]


@pytest.fixture
def cli(tmp_path, api, monkeypatch, capsys):
    """Run `askbatch ARGS` in this process with the test environment; returns (code, output)."""
    main = InProcess(base_env(tmp_path, api), monkeypatch, capsys, tmp_path)

    def run(*args: str) -> tuple[int, str]:
        said = main(*args)
        return said.code, said.stderr + said.stdout

    return run


def _nothing_done(folder: Path, api, before: set[str]) -> None:
    assert sum(api.stats()["requests"].values()) == 0, "nothing was sent"
    assert {p.name for p in folder.iterdir()} == before, "nothing was written"
    assert not (folder / "state").exists(), "no job was made"


def _one_message(text: str) -> str:
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("askbatch: error: "), text
    assert API_KEY not in text
    return lines[0]


def _make(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    """The worksheet for a case, and the message fragments that must be in the error."""
    p = tmp_path / "in.csv"
    if case == "missing file":
        return tmp_path / "nope.csv", ["nope.csv", "not found"]
    if case == "directory":
        (tmp_path / "folder.csv").mkdir()
        return tmp_path / "folder.csv", ["folder.csv", "folder"]
    if case == "binary file":
        p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
        return p, [str(p), "not a CSV text file", "NUL"]
    if case == "excel workbook":
        p.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00question")
        return p, [str(p), "not a CSV text file", "Save As"]
    if case == "empty file":
        p.write_bytes(b"")
        return p, [str(p), "empty"]
    if case == "header without rows":
        p.write_text("id,question\n")
        return p, [str(p), "no questions"]
    if case == "no question column":
        write_csv(p, ["id", "Question ", "note"], [["1", "hi", ""]])
        return p, [str(p), 'no "question" column', '"id", "Question ", "note"']
    if case == "duplicate ids":
        write_csv(p, ["id", "question"], [["a", "x"], ["b", "y"], ["a", "z"]])
        return p, [str(p), "row 3", 'column "id"', '"a"', "row 1"]
    if case == "ragged row":
        p.write_text("id,question\n1,fine\n2,has, a comma\n")
        return p, [str(p), "row 2", "3 fields", "2 columns"]
    if case == "undecodable bytes":
        p.write_bytes("id,question\n1,café\n".encode() + b"2,caf\xe9\x80\n")
        return p, [str(p), "line 3", "0xE9", "not valid UTF-8", "--encoding"]
    if case == "field over the size limit":
        write_csv(p, ["id", "question"], [["1", "ok"], ["2", "x" * 100_001]])
        return p, [str(p), "row 2", 'column "question"', "100,001", "100,000"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "directory",
        "binary file",
        "excel workbook",
        "empty file",
        "header without rows",
        "no question column",
        "duplicate ids",
        "ragged row",
        "undecodable bytes",
        "field over the size limit",
    ],
)
def test_bad_worksheet(case, tmp_path, api, cli):
    sheet, fragments = _make(tmp_path, case)
    before = {p.name for p in tmp_path.iterdir()}
    code, text = cli("run", str(sheet), "--provider", "chat")
    assert code == 2
    message = _one_message(text)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    _nothing_done(tmp_path, api, before)


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through permissions; /proc takes no new files at all
        return Path("/proc/askbatch-answers.csv")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return folder / "out.csv"


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("the input itself", "this is the input file"),
        ("an existing file", "--overwrite"),
        ("a folder that does not exist", "does not exist"),
        ("a folder", "this is a folder"),
        ("not writable", "cannot write to the folder"),
    ],
)
def test_bad_output_path(case, fragment, tmp_path, api, cli):
    sheet = write_csv(tmp_path / "in.csv", ["question"], [["hi"]])
    out = {
        "the input itself": sheet,
        "an existing file": tmp_path / "in.answers.csv",
        "a folder that does not exist": tmp_path / "no" / "out.csv",
        "a folder": tmp_path,
        "not writable": _unwritable(tmp_path),
    }[case]
    if case == "an existing file":
        out.write_text("keep me")
    before = {p.name for p in tmp_path.iterdir()}
    code, text = cli("run", str(sheet), "-o", str(out), "--provider", "chat")
    assert code == 2
    message = _one_message(text)
    assert fragment in message and str(out) in message, message
    _nothing_done(tmp_path, api, before)
    if case == "an existing file":
        assert out.read_text() == "keep me"


def test_no_question_column_in_another_encoding_names_the_columns(tmp_path, api, cli):
    sheet = write_csv(tmp_path / "k.csv", ["번호", "질문"], CP949_ROWS, encoding="cp949")
    code, text = cli("run", str(sheet))
    assert code == 2
    assert '"번호", "질문"' in _one_message(text)


@pytest.mark.parametrize("flag", [[], ["--encoding", "euc-kr"]], ids=["detected", "given"])
def test_korean_excel_worksheet_is_read_and_says_how(flag, tmp_path, api):
    """Excel on Korean Windows saves "CSV" as CP949: detected, or given with --encoding."""
    sheet = write_csv(tmp_path / "k.csv", ["id", "question"], CP949_ROWS, encoding="cp949")
    out = tmp_path / "k.answers.csv"
    run = askbatch(["run", str(sheet), "--provider", "chat", *flag], base_env(tmp_path, api), out)
    assert run.code == 0, run.stderr
    assert f"read as {'euc_kr' if flag else 'cp949'}" in run.stderr
    assert [r["question"] for r in run.rows()] == [q for _, q in CP949_ROWS]
    assert [r["status"] for r in run.rows()] == ["completed"] * 2


def test_bad_encoding_flag(tmp_path, api, cli):
    sheet = write_csv(tmp_path / "k.csv", ["id", "question"], CP949_ROWS, encoding="cp949")
    code, text = cli("run", str(sheet), "--encoding", "utf-8")
    assert code == 2
    message = _one_message(text)
    assert str(sheet) in message and "not valid utf-8" in message and "line 2" in message
    code, text = cli("run", str(sheet), "--encoding", "klingon")
    assert code == 2 and "unknown encoding 'klingon'" in _one_message(text)


@pytest.mark.parametrize(
    ("job", "message"),
    [("20990101-000000-abcdef", "no job 20990101-000000-abcdef"), ("../../etc", "not a job id")],
)
@pytest.mark.parametrize("command", ["status", "collect", "resume", "cancel"])
def test_unknown_job(command, job, message, tmp_path, api, cli):
    code, text = cli(command, job)
    assert code == 2 and message in _one_message(text)


def test_retry_failed_without_an_earlier_job(tmp_path, api, cli):
    sheet = write_csv(tmp_path / "in.csv", ["question"], [["hi"]])
    code, text = cli("run", str(sheet), "--retry-failed")
    assert code == 2 and "no earlier job of this worksheet" in _one_message(text)
