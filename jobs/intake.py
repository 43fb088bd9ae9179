"""Read and check the input worksheet: a CSV of questions, one per row.

`open_worksheet` validates the whole file in one streaming pass, so a bad worksheet fails
before any question is sent, with one message naming the file, the row and the column.
The returned `Worksheet` re-reads the file for `rows()` and `records()`: reading twice keeps
memory bounded for 100,000-row worksheets instead of holding every cell.

Row numbers in messages are 1-based data rows (the first row under the header is row 1);
the file line is added when it differs, e.g. "row 3 (line 5)". Fully empty lines are not
rows: they are skipped everywhere, as spreadsheet programs and pandas do.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobs.bounds import ROW_CELLS, Lines, TooLong
from jobs.encoding import choose_encoding
from worker.errors import InputError
from worker.models import Row

QUESTION = "question"
ID = "id"
OPTIONAL_COLUMNS = ("thread", "model", "instructions")


@dataclass(frozen=True)
class Worksheet:
    """A checked worksheet. `blank_rows` holds 0-based indices of rows with a blank question."""

    path: Path
    encoding: str
    columns: list[str]
    n_rows: int
    blank_rows: frozenset[int]
    max_field_chars: int = 100_000

    def records(self) -> Iterator[list[str]]:
        """Yield the raw cells of every data row, in file order (re-reads the file)."""
        n = 0
        for n, _line, cells in _data_records(self.path, self.encoding, self.max_field_chars):
            if n > self.n_rows or len(cells) != len(self.columns):
                raise _changed(self.path)
            yield cells
        if n != self.n_rows:
            raise _changed(self.path)

    def rows(self) -> Iterator[Row]:
        """Yield a `Row` for every data row, blank questions included (re-reads the file)."""
        pick = _ColumnPicker(self.columns)
        for index, cells in enumerate(self.records()):
            yield pick.row(index, cells)


class _ColumnPicker:
    """Builds `Row`s from cell lists by column position."""

    def __init__(self, columns: list[str]) -> None:
        self.question = columns.index(QUESTION)
        self.id = columns.index(ID) if ID in columns else None
        self.optional = {c: columns.index(c) for c in OPTIONAL_COLUMNS if c in columns}

    def row_id(self, index: int, cells: list[str]) -> str:
        return cells[self.id] if self.id is not None else str(index + 1)

    def row(self, index: int, cells: list[str]) -> Row:
        extra = {name: cells[pos] for name, pos in self.optional.items()}
        return Row(index, self.row_id(index, cells), cells[self.question], **extra)


class TooManyRows(InputError):
    """Raised when a worksheet has more rows than the caller takes (`max_rows`)."""


def open_worksheet(
    path: str | os.PathLike[str],
    encoding: str | None = None,
    max_field_chars: int = 100_000,
    max_rows: int | None = None,
) -> Worksheet:
    """Check the worksheet at `path` and return it; raise `InputError` if it cannot be used.

    With `encoding=None` the file must be UTF-8 (with or without BOM) or, failing that,
    decode completely as CP949. A given `encoding` is used exactly. A row longer in the file
    than ROW_CELLS full cells is refused as it is read (jobs/bounds.py).
    """
    path = Path(path)
    _check_is_file(path)
    encoding = choose_encoding(path, encoding)
    _raise_field_size_limit(max_field_chars)
    records = _data_records(path, encoding, max_field_chars, with_header=True)
    columns = _read_header(path, records, max_field_chars)
    n_rows, blank = _check_rows(path, records, columns, max_field_chars, max_rows)
    return Worksheet(path, encoding, columns, n_rows, frozenset(blank), max_field_chars)


# --- the file ---------------------------------------------------------------------------


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: this is a folder, not a CSV file; give the path of a .csv file")
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path and the file name")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror}") from None
    if size == 0:
        raise InputError(f"{path}: the file is empty; it needs a header row and question rows")


# --- CSV records ------------------------------------------------------------------------


def _raise_field_size_limit(max_field_chars: int) -> None:
    # The csv limit is process-wide; only ever raise it, so our own length check (which
    # names the row and column) is the one that fires.
    if csv.field_size_limit() <= max_field_chars:
        csv.field_size_limit(max_field_chars + 1)


def _data_records(
    path: Path, encoding: str, max_field_chars: int, with_header: bool = False
) -> Iterator[tuple[int, int, list[str]]]:
    """Yield (row number, first line, cells) per record; row 0 is the header.

    Empty lines are skipped. The header is yielded only if `with_header`. Read and parse
    errors become `InputError`s naming the row.
    """
    row, start, most = 0, 1, ROW_CELLS * max_field_chars
    try:
        with path.open(encoding=encoding, newline="") as f:
            lines = Lines(f, most)
            reader = csv.reader(lines, strict=True)  # strict: malformed quoting is an error
            for cells in reader:
                lines.next_row()
                if cells:
                    if row or with_header:
                        yield row, start, _strip_bom(cells) if row == 0 else cells
                    row += 1
                start = reader.line_num + 1
    except csv.Error as e:
        raise _csv_error(path, row, start, e) from None
    except TooLong:
        where = "the header" if row == 0 else _where(row, start)
        raise InputError(
            f"{path}: {where} is longer than {most:,} characters ({ROW_CELLS} cells of the "
            f'{max_field_chars:,} a cell may hold), or a quote (") in it is never closed. '
            "Check the quotes in that row, or shorten its cells."
        ) from None
    except UnicodeDecodeError:
        raise _changed(path) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the file: {e.strerror}") from None


def _strip_bom(header: list[str]) -> list[str]:
    # An explicit --encoding utf-8 leaves the BOM on the first column name.
    return [header[0].removeprefix("\ufeff"), *header[1:]]


def _csv_error(path: Path, row: int, line: int, e: csv.Error) -> InputError:
    where = "the header" if row == 0 else _where(row, line)
    text = str(e)
    if "field larger than field limit" in text:
        return InputError(
            f"{path}: {where} has a cell longer than {csv.field_size_limit() - 1:,} characters, "
            'or a quote (") that is never closed. Check the quotes in that row.'
        )
    if "unexpected end of data" in text:
        return InputError(
            f'{path}: a quote (") opened in {where} is never closed; the file ends inside it. '
            'Close the quote; a quote inside a quoted cell must be doubled ("").'
        )
    return InputError(
        f"{path}: bad quoting in {where}: {text}. A cell that holds quotes must be wrapped in "
        'quotes, with each quote inside it doubled ("").'
    )


def _where(row: int, line: int) -> str:
    """ "row 3", or "row 3 (line 5)" when the file line is not simply row + 1."""
    return f"row {row}" if line == row + 1 else f"row {row} (line {line})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _changed(path: Path) -> InputError:
    return InputError(
        f"{path}: the file changed while askbatch was reading it; save it, then run again"
    )


# --- header and rows --------------------------------------------------------------------


def _read_header(
    path: Path, records: Iterator[tuple[int, int, list[str]]], max_field_chars: int
) -> list[str]:
    header = next(records, None)
    if header is None:
        raise InputError(f"{path}: the file has no header row and no questions")
    columns = header[2]
    for pos, name in enumerate(columns, 1):
        if len(name) > max_field_chars:
            raise InputError(f"{path}: column {pos} of the header is too long to be a name")
    _check_names(path, columns)
    if QUESTION not in columns:
        raise InputError(_no_question_message(path, columns))
    return columns


def _check_names(path: Path, columns: list[str]) -> None:
    seen: dict[str, int] = {}
    for pos, name in enumerate(columns, 1):
        if not name.strip():
            raise InputError(
                f"{path}: column {pos} of the header has no name; name it, or delete the "
                "column if it is empty"
            )
        if name in seen:
            raise InputError(
                f'{path}: column "{name}" appears twice in the header (columns {seen[name]} '
                f"and {pos}); rename one of them"
            )
        seen[name] = pos


def _no_question_message(path: Path, columns: list[str]) -> str:
    found = ", ".join(f'"{c}"' for c in columns)
    message = f'{path}: no "{QUESTION}" column; columns found: {found}.'
    near = [c for c in columns if c.strip().casefold() == QUESTION]
    if near:
        return f'{message} Did you mean "{near[0]}"? Rename it to exactly "{QUESTION}".'
    return f'{message} Name the column that holds the questions "{QUESTION}" (lower case).'


def _check_rows(
    path: Path,
    records: Iterator[tuple[int, int, list[str]]],
    columns: list[str],
    max_field_chars: int,
    max_rows: int | None,
) -> tuple[int, list[int]]:
    """Check every data row; return the row count and the indices of blank questions."""
    pick = _ColumnPicker(columns)
    ids: dict[str, int] = {}
    blank: list[int] = []
    n = 0
    for n, line, cells in records:
        if max_rows is not None and n > max_rows:
            raise TooManyRows(f"{path}: more than {max_rows:,} rows, the most taken here")
        _check_shape(path, n, line, cells, columns, max_field_chars)
        if pick.id is not None:
            _check_id(path, n, line, cells[pick.id], ids)
        if not cells[pick.question].strip():
            blank.append(n - 1)
    if n == 0:
        raise InputError(f"{path}: the file has a header row but no questions under it")
    return n, blank


def _check_shape(
    path: Path, row: int, line: int, cells: list[str], columns: list[str], max_chars: int
) -> None:
    if len(cells) != len(columns):
        hint = (
            "A cell probably holds a comma: wrap that cell in double quotes."
            if len(cells) > len(columns)
            else "Add the missing cells (they may be empty) or check for a stray quote."
        )
        raise InputError(
            f"{path}: {_where(row, line)} has {_count(len(cells), 'field')} but the header has "
            f"{_count(len(columns), 'column')}. {hint}"
        )
    for name, cell in zip(columns, cells, strict=True):
        if len(cell) > max_chars:
            raise InputError(
                f'{path}: {_where(row, line)}, column "{name}": the cell has {len(cell):,} '
                f"characters; the limit is {max_chars:,}. Shorten it."
            )


def _check_id(path: Path, row: int, line: int, value: str, ids: dict[str, int]) -> None:
    if not value.strip():
        raise InputError(
            f'{path}: {_where(row, line)}, column "{ID}" is empty; give every row a unique id, '
            f'or delete the "{ID}" column to number the rows automatically'
        )
    first = ids.setdefault(value, row)
    if first != row:
        raise InputError(
            f'{path}: {_where(row, line)}, column "{ID}": the id "{value}" is already used by '
            f"row {first}; every id must be unique"
        )
