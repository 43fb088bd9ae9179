"""Tests for jobs.intake: worksheet checks, encodings, and exact cell round-trips."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.intake import Worksheet, open_worksheet
from worker.errors import InputError
from worker.models import Row

TRICKY = [
    ["id", "question", "note"],
    ["a1", '한국어 질문: "따옴표", 쉼표, 그리고\n줄바꿈', "메모 🙂"],
    ["a2", 'English, with commas and "quotes" and\r\nCRLF inside', " spaced "],
    ["a3", "이모지 🚀🇰🇷 and trailing space ", ""],
    ["a4", "=SUM(A1:A2) stays as typed", "-3"],
]


def csv_text(rows: list[list[str]], lineterminator: str = "\r\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerows(rows)
    return buf.getvalue()


def write(tmp_path: Path, data: str | bytes, name: str = "sheet.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(InputError) as info:
        open_worksheet(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("lineterminator", ["\r\n", "\n"])
def test_tricky_cells_round_trip_exactly(tmp_path: Path, bom: bytes, lineterminator: str) -> None:
    path = write(tmp_path, bom + csv_text(TRICKY, lineterminator).encode("utf-8"))
    sheet = open_worksheet(path)
    assert sheet.encoding == ("utf-8-sig" if bom else "utf-8")
    assert sheet.columns == TRICKY[0]
    assert sheet.n_rows == 4
    assert list(sheet.records()) == TRICKY[1:]
    assert [(r.index, r.id, r.question) for r in sheet.rows()] == [
        (i, row[0], row[1]) for i, row in enumerate(TRICKY[1:])
    ]


def test_records_can_be_read_twice(tmp_path: Path) -> None:
    sheet = open_worksheet(write(tmp_path, csv_text(TRICKY)))
    assert list(sheet.records()) == list(sheet.records())


def test_cp949_file_is_detected(tmp_path: Path) -> None:
    rows = [["question", "비고"], ["안녕하세요, 세계?", "엑셀 한글"], ["똠방각하", ""]]
    path = write(tmp_path, csv_text(rows).encode("cp949"))
    sheet = open_worksheet(path)
    assert sheet.encoding == "cp949"
    assert sheet.columns == rows[0]
    assert list(sheet.records()) == rows[1:]


def test_explicit_encoding_is_used(tmp_path: Path) -> None:
    rows = [["question"], ["서울은 어디?"]]
    path = write(tmp_path, csv_text(rows).encode("euc-kr"))
    sheet = open_worksheet(path, encoding="euc-kr")
    assert sheet.encoding == "euc_kr"
    assert [r.question for r in sheet.rows()] == ["서울은 어디?"]


def test_explicit_utf8_strips_bom_from_header(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfquestion\nhi\n")
    assert open_worksheet(path, encoding="utf-8").columns == ["question"]


def test_ids_default_to_row_numbers(tmp_path: Path) -> None:
    sheet = open_worksheet(write(tmp_path, "question\nq1\nq2\n\nq3\n"))
    assert [r.id for r in sheet.rows()] == ["1", "2", "3"]  # the empty line is not a row
    assert sheet.n_rows == 3


def test_blank_questions_are_listed_not_errors(tmp_path: Path) -> None:
    sheet = open_worksheet(write(tmp_path, 'id,question\n1,ask\n2,""\n3,"  \t"\n4,x\n'))
    assert sheet.blank_rows == frozenset({1, 2})
    assert [r.question for r in sheet.rows()] == ["ask", "", "  \t", "x"]


def test_optional_columns_are_copied(tmp_path: Path) -> None:
    text = csv_text(
        [
            ["instructions", "question", "model", "thread", "id"],
            ["Answer in Korean", "Why?", "gpt-x", "t1", "k9"],
            ["", "How?", "", "", "k10"],
        ]
    )
    rows = list(open_worksheet(write(tmp_path, text)).rows())
    assert rows == [
        Row(0, "k9", "Why?", thread="t1", model="gpt-x", instructions="Answer in Korean"),
        Row(1, "k10", "How?"),
    ]


def test_worksheet_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "question\nq\n")
    assert open_worksheet(str(path)) == Worksheet(path, "utf-8", ["question"], 1, frozenset())


# --- errors -------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in error_of(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    assert "folder" in error_of(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in error_of(write(tmp_path, b""))


def test_only_blank_lines(tmp_path: Path) -> None:
    assert "no header" in error_of(write(tmp_path, "\n\r\n\n"))


def test_header_without_rows(tmp_path: Path) -> None:
    assert "no questions" in error_of(write(tmp_path, "id,question\n"))


def test_binary_file_with_nul_bytes(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, b"PK\x03\x04\x14\x00\x06\x00", "book.xlsx"))
    assert "not a CSV text file" in message
    assert "CSV UTF-8" in message


def test_undecodable_bytes_name_line_and_offset(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, b"question\nok\nbad \xff\x80 bytes\n"))
    assert "byte 0xFF at line 3 (byte offset 16)" in message
    assert "--encoding" in message


def test_undecodable_bytes_in_bom_file_do_not_fall_back_to_cp949(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfquestion\n\xb0\xa1\n")  # valid CP949, bad UTF-8
    assert "byte 0xB0 at line 2" in error_of(path)


def test_truncated_character_at_end(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, b"question\n\xed\x95"), encoding="utf-8")
    assert "line 2 (byte offset 9)" in message


def test_utf16_file_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "question\nhi\n".encode("utf-16"))
    assert "utf-16" in error_of(path)
    assert open_worksheet(path, encoding="utf-16").columns == ["question"]


def test_unknown_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "question\nhi\n")
    assert "unknown encoding 'klingon'" in error_of(path, encoding="klingon")
    assert "unknown encoding" in error_of(path, encoding="base64")


def test_wrong_explicit_encoding(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "question\n질문\n"), encoding="ascii")
    assert "byte 0xEC at line 2" in message
    assert "not valid ascii" in message


def test_no_question_column_lists_columns_and_suggests(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "Question ,q\nhi,there\n"))
    assert 'no "question" column; columns found: "Question ", "q"' in message
    assert 'Did you mean "Question "?' in message


def test_no_question_column_without_near_match(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "질문,답\nhi,there\n"))
    assert 'columns found: "질문", "답"' in message
    assert "Did you mean" not in message


def test_blank_column_name(tmp_path: Path) -> None:
    assert "column 2 of the header has no name" in error_of(write(tmp_path, "question, ,x\n"))


def test_duplicate_column_name(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "question,a,a\n1,2,3\n"))
    assert 'column "a" appears twice in the header (columns 2 and 3)' in message


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "id,question\nx,1\ny,2\nx,3\n"))
    assert 'row 3, column "id": the id "x" is already used by row 1' in message


def test_empty_id(tmp_path: Path) -> None:
    assert 'row 2, column "id" is empty' in error_of(write(tmp_path, "id,question\nx,1\n,2\n"))


def test_row_with_too_many_fields(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "id,question\n1,a\n2,b,c\n"))
    assert "row 2 has 3 fields but the header has 2 columns" in message
    assert "comma" in message


def test_row_with_too_few_fields_names_line_after_multiline_cell(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, 'id,question\n1,"two\nlines"\n2\n'))
    assert "row 2 (line 4) has 1 field but the header has 2 columns" in message


def test_field_too_long_names_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "id,question\n1,short\n2," + "x" * 11 + "\n")
    message = error_of(path, max_field_chars=10)
    assert 'row 2, column "question": the cell has 11 characters; the limit is 10' in message
    assert open_worksheet(path, max_field_chars=11).n_rows == 2


def test_quote_never_closed(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, 'id,question\n1,ok\n2,"never closed\n3,more\n'))
    assert "row 2" in message
    assert "never closed" in message


def test_bad_quoting(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, 'id,question\n1,"quoted"tail\n'))
    assert "bad quoting in row 1" in message


def test_huge_unclosed_quote_is_reported_not_loaded(tmp_path: Path) -> None:
    limit = csv.field_size_limit()
    path = write(tmp_path, 'question\n"' + "x" * (limit + 10) + "\n")
    message = error_of(path, max_field_chars=10)
    assert "row 1" in message
    assert "never closed" in message


def test_file_changed_after_check(tmp_path: Path) -> None:
    path = write(tmp_path, "question\na\nb\n")
    sheet = open_worksheet(path)
    path.write_text("question\na\nb\nc\n")
    with pytest.raises(InputError, match="changed"):
        list(sheet.rows())


# --- fuzz ---------------------------------------------------------------------------------


def _open_and_read(path: Path) -> None:
    try:
        sheet = open_worksheet(path)
    except InputError:
        return
    rows = list(sheet.rows())
    assert len(rows) == sheet.n_rows
    assert list(sheet.records())[-1] is not None


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    _open_and_read(write(tmp_path, data))


CELL = st.text(alphabet=st.sampled_from(list('ab 질문,"\n\r\t\x00é🙂')), max_size=8)
NAME = st.one_of(st.sampled_from(["question", "id", "thread", "model", " question"]), CELL)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(NAME, min_size=1, max_size=4),
    body=st.lists(st.lists(CELL, max_size=5), max_size=6),
    quoted=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp949"]),
)
def test_fuzz_csvish_text(
    tmp_path: Path, header: list[str], body: list[list[str]], quoted: bool, encoding: str
) -> None:
    rows = [header, *body]
    text = csv_text(rows) if quoted else "\n".join(",".join(r) for r in rows)
    _open_and_read(write(tmp_path, text.encode(encoding, errors="replace")))


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_bad_byte_position_does_not_depend_on_read_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr("jobs.encoding._CHUNK_BYTES", chunk)
    data = "question\n질문\n한국".encode() + b"\xed\x95" + b"x\n"  # truncated 3-byte char
    message = error_of(write(tmp_path, data))
    assert "byte 0xED at line 3 (byte offset 22)" in message
    good = write(tmp_path, "question\n질문🙂\n".encode("utf-8-sig"), "good.csv")
    assert open_worksheet(good).encoding == "utf-8-sig"
