"""Tests for jobs.csvout: answers CSV layout, sanitising, atomic writes and output paths."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from jobs.csvout import check_output_path, default_output_path, write_answers
from jobs.intake import Worksheet, open_worksheet
from worker.errors import InputError
from worker.models import RESULT_COLUMNS, Result, Usage

INPUT = [
    ["id", "question", "model", "memo"],
    ["k1", '세금은 "얼마"인가요?\r\n두 줄, 쉼표', "gpt-a", "=SUM(A1:A9)"],
    ["k2", "What is 2-5?", "", "  spaced  "],
    ["k3", "이모지 🙂", "gpt-b", "-x"],
    ["k4", "", "", ""],
]


def make_sheet(tmp_path: Path, rows: list[list[str]] = INPUT) -> Worksheet:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path = tmp_path / "in.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    return open_worksheet(path)


def read_back(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def result(index: int, **kwargs: object) -> Result:
    return Result(index=index, status=kwargs.pop("status", "completed"), **kwargs)  # type: ignore[arg-type]


def fetch_from(results: dict[int, Result]):
    def fetch(indices: list[int]) -> dict[int, Result]:
        return {i: results[i] for i in indices if i in results}

    return fetch


def test_layout_order_passthrough_and_results(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    full = Result(
        index=0,
        status="completed",
        answer="답: 3,000원\n끝",
        usage=Usage(10, 5, 15, 2, 1),
        model="gpt-4o",
        thread_id="th",
        run_id="run",
        latency_s=1.23456,
        attempts=2,
        cost_usd=Decimal("0.0000125"),
        service_tier="flex",
    )
    results = {0: full, 1: result(1, answer="-3"), 3: result(3, status="skipped")}
    out = write_answers(sheet, fetch_from(results), tmp_path / "out.csv")
    rows = read_back(out)

    clashed = [f"askbatch_{c}" if c == "model" else c for c in RESULT_COLUMNS]
    assert rows[0] == INPUT[0] + clashed
    assert [r[:4] for r in rows[1:]] == INPUT[1:]  # passthrough cells exact, input order
    assert rows[1][4:] == list(full.columns().values())
    assert rows[1][4:] == [
        "completed", "답: 3,000원\n끝", "", "10", "5", "15", "2", "1", "0.000012500",
        "gpt-4o", "th", "run", "1.235", "2", "", "flex",
    ]  # fmt: skip
    assert rows[2][4:6] == ["completed", "-3"]  # negative number answers are not prefixed
    assert rows[3][4:] == ["pending"] + [""] * (len(RESULT_COLUMNS) - 1)
    assert rows[4][4] == "skipped"


def test_file_is_utf8_with_bom_and_keeps_crlf_inside_cells(tmp_path: Path) -> None:
    out = write_answers(make_sheet(tmp_path), fetch_from({}), tmp_path / "out.csv")
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfid,question,model,memo,status,")
    assert '"세금은 ""얼마""인가요?\r\n두 줄, 쉼표"'.encode() in data


def test_fetch_is_called_in_chunks_in_order(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    calls: list[list[int]] = []

    def fetch(indices: list[int]) -> dict[int, Result]:
        calls.append(indices)
        return {}

    write_answers(sheet, fetch, tmp_path / "out.csv", chunk=3)
    assert calls == [[0, 1, 2], [3]]


def test_sanitize_prefixes_formulas_in_our_cells_only(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    answers = ["=1+1", "-3", "@cmd", "\tx"]
    results = {
        i: result(i, answer=a, error="+danger" if i == 0 else "") for i, a in enumerate(answers)
    }
    rows = read_back(write_answers(sheet, fetch_from(results), tmp_path / "on.csv"))
    assert [r[5] for r in rows[1:]] == ["'=1+1", "-3", "'@cmd", "'\tx"]
    assert rows[1][6] == "'+danger"
    assert rows[1][3] == "=SUM(A1:A9)" and rows[3][3] == "-x"  # input cells untouched

    raw = read_back(write_answers(sheet, fetch_from(results), tmp_path / "off.csv", sanitize=False))
    assert [r[5] for r in raw[1:]] == answers
    assert raw[1][6] == "+danger"


@pytest.mark.parametrize("number", ["-3", "+2.5", "-1e3", "-0.5", "-1,234", "-.5", "+7E-2"])
def test_plain_numbers_are_not_prefixed(tmp_path: Path, number: str) -> None:
    sheet = make_sheet(tmp_path)
    rows = read_back(
        write_answers(sheet, fetch_from({0: result(0, answer=number)}), tmp_path / "o.csv")
    )
    assert rows[1][5] == number


@pytest.mark.parametrize("text", ["-", "-3+4", "-1e3)", "+A1", "-2 ", "-٣"])
def test_number_lookalikes_are_prefixed(tmp_path: Path, text: str) -> None:
    sheet = make_sheet(tmp_path)
    rows = read_back(
        write_answers(sheet, fetch_from({0: result(0, answer=text)}), tmp_path / "o.csv")
    )
    assert rows[1][5] == "'" + text


@dataclass
class ResultWithExtra(Result):
    extra: dict[str, object] = field(default_factory=dict)


def test_extra_columns(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    results = {0: ResultWithExtra(index=0, status="completed", extra={"memo": "=x", "score": 7})}
    out = write_answers(
        sheet, fetch_from(results), tmp_path / "o.csv", extra_columns=["memo", "score"]
    )
    rows = read_back(out)
    assert rows[0][-2:] == ["askbatch_memo", "score"]
    assert rows[1][-2:] == ["'=x", "7"]
    assert rows[2][-2:] == ["", ""]  # a plain Result has no extra
    assert all(len(r) == len(rows[0]) for r in rows)


def test_pandas_round_trip(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    results = {i: result(i, answer=f'답 {i}, "ok"\n') for i in range(4)}
    out = write_answers(sheet, fetch_from(results), tmp_path / "o.csv")
    frame = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(frame.columns) == read_back(out)[0]
    assert frame.values.tolist() == read_back(out)[1:]
    assert frame[["id", "question", "model", "memo"]].values.tolist() == INPUT[1:]


# --- atomicity ----------------------------------------------------------------------------


def failing_fetch(indices: list[int]) -> dict[int, Result]:
    if indices[0] > 0:
        raise RuntimeError("store went away")
    return {}


def test_failure_leaves_no_output_and_no_temp_file(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    before = set(os.listdir(tmp_path))
    with pytest.raises(RuntimeError):
        write_answers(sheet, failing_fetch, tmp_path / "out.csv", chunk=2)
    assert set(os.listdir(tmp_path)) == before


def test_failure_keeps_existing_output(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    out = tmp_path / "out.csv"
    out.write_text("old answers")
    with pytest.raises(RuntimeError):
        write_answers(sheet, failing_fetch, out, chunk=2)
    assert out.read_text() == "old answers"
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "out.csv"]


def test_success_replaces_existing_output_and_leaves_no_temp(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    out = tmp_path / "out.csv"
    out.write_text("old answers")
    write_answers(sheet, fetch_from({}), out)
    assert read_back(out)[0][0] == "id"
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "out.csv"]


def test_refuses_to_write_over_the_input(tmp_path: Path) -> None:
    sheet = make_sheet(tmp_path)
    with pytest.raises(InputError, match="input file"):
        write_answers(sheet, fetch_from({}), sheet.path)


# --- output paths -------------------------------------------------------------------------


def test_default_output_path(tmp_path: Path) -> None:
    assert default_output_path(tmp_path / "질문.csv") == tmp_path / "질문.answers.csv"


def test_check_output_path_accepts_new_file(tmp_path: Path) -> None:
    check_output_path(tmp_path / "new.csv", tmp_path / "in.csv", overwrite=False)


def test_check_output_path_rejects_input(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("question\nq\n")
    for same in (src, tmp_path / "." / "in.csv"):
        with pytest.raises(InputError, match="input file"):
            check_output_path(same, src, overwrite=True)
    link = tmp_path / "link.csv"
    os.link(src, link)  # same inode, different name
    with pytest.raises(InputError, match="input file"):
        check_output_path(link, src, overwrite=True)


def test_check_output_path_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("x")
    with pytest.raises(InputError) as info:
        check_output_path(out, tmp_path / "in.csv", overwrite=False)
    assert str(info.value) == (
        f"{out} already exists; pass --overwrite to replace it, or -o to choose another path"
    )
    check_output_path(out, tmp_path / "in.csv", overwrite=True)


def test_check_output_path_directory_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder; give a file name"):
        check_output_path(tmp_path, tmp_path / "in.csv", overwrite=True)
    with pytest.raises(InputError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "o.csv", tmp_path / "in.csv", overwrite=True)


def test_check_output_path_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulated: chmod does not stop root, which may run the tests.
    monkeypatch.setattr("jobs.csvout.os.access", lambda *_args: False)
    with pytest.raises(InputError, match="cannot write"):
        check_output_path(tmp_path / "o.csv", tmp_path / "in.csv", overwrite=False)
