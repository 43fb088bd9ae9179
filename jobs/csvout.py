"""Write the answers CSV: the input columns unchanged, then askbatch's result columns.

The file is streamed chunk by chunk (bounded memory) into a temporary file beside the
output and moved into place only when complete, so a failure never leaves a half-written
answers file or touches an existing one.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO

from jobs import grade
from jobs.grade import Grader
from jobs.intake import Worksheet
from worker.errors import InputError
from worker.models import RESULT_COLUMNS, JobSpec, Result
from worker.profile import Profile
from worker.store import Results

PENDING = "pending"
CLASH_PREFIX = "askbatch_"

# Excel runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# ...but a plain signed number such as "-3", "+2.5", "-1e3" or "-1,234" is safe and common.
_PLAIN_NUMBER = re.compile(
    r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII
)

Fetch = Callable[[list[int]], dict[int, Result]]


def write_answers(
    sheet: Worksheet,
    fetch: Fetch,
    out_path: Path,
    *,
    sanitize: bool = True,
    chunk: int = 1000,
    extra_columns: Sequence[str] = (),
    pending_reason: str = "",
    grader: Grader | None = None,
) -> Path:
    """Write the answers CSV for `sheet` to `out_path` atomically and return `out_path`.

    Header: the input columns, then RESULT_COLUMNS, then `extra_columns`. An askbatch column
    whose name is already an input column (e.g. the input has its own "model" or "status")
    is written as "askbatch_<name>"; the input column keeps its name.

    `fetch(indices)` returns the results of a chunk of row indices; a row without a result
    is written with status "pending", `pending_reason` as its error, and empty result cells.
    With `sanitize`, cells askbatch writes (never the input's own cells) that Excel would run
    as a formula get a leading "'". With a `grader` (jobs/grade.py), its columns come last.
    """
    out_path = Path(out_path)
    if _same_file(out_path, sheet.path):
        raise InputError(f"{out_path}: this is the input file; choose another output path (-o)")
    graded = grader.columns if grader else ()
    header = [
        *sheet.columns,
        *output_names(sheet.columns, [*RESULT_COLUMNS, *extra_columns, *graded]),
    ]
    if grader:
        fetch = grader.fetching(fetch)
    with _atomic_writer(out_path) as f:
        # csv.writer quotes cells holding commas, quotes or newlines, so multi-line answers
        # stay in one cell.
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        for cells, result in _joined(sheet, fetch, chunk):
            ours = _result_cells(result, extra_columns, pending_reason)
            if grader:
                ours += grader.cells(cells, result)
            writer.writerow(cells + ([_neutralise(c) for c in ours] if sanitize else ours))
    return out_path


def write_job(
    store: Results,
    spec: JobSpec,
    sheet: Worksheet,
    out_path: Path,
    *,
    sanitize: bool = True,
    pending_reason: str = "",
) -> Path:
    """The answers CSV of a job from what its store holds, with its profile's answer columns."""
    return write_answers(
        sheet,
        lambda idx: store.get(spec.job_id, idx),
        out_path,
        sanitize=sanitize,
        extra_columns=Profile.from_json(spec.profile).answer_columns(),
        pending_reason=pending_reason,
        grader=grade.for_job(store, spec, sheet),
    )


def output_names(input_columns: Sequence[str], ours: Sequence[str]) -> list[str]:
    """Names for askbatch's columns: prefixed with "askbatch_" where they clash."""
    taken = set(input_columns)
    names = []
    for name in ours:
        while name in taken:
            name = CLASH_PREFIX + name
        taken.add(name)
        names.append(name)
    return names


def _joined(
    sheet: Worksheet, fetch: Fetch, chunk: int
) -> Iterator[tuple[list[str], Result | None]]:
    """Yield (input cells, result or None) per row, fetching results a chunk at a time."""
    records = enumerate(sheet.records())
    while batch := list(islice(records, max(chunk, 1))):
        results = fetch([index for index, _ in batch])
        for index, cells in batch:
            yield cells, results.get(index)


def _result_cells(
    result: Result | None, extra_columns: Sequence[str], pending_reason: str = ""
) -> list[str]:
    if result is None:
        cells = [PENDING] + [""] * (len(RESULT_COLUMNS) - 1 + len(extra_columns))
        cells[RESULT_COLUMNS.index("error")] = pending_reason
        return cells
    columns = result.columns()
    extra = getattr(result, "extra", None) or {}
    return [columns[name] for name in RESULT_COLUMNS] + [
        _text(extra.get(name)) for name in extra_columns
    ]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _neutralise(cell: str) -> str:
    """Prefix "'" to a cell Excel would treat as a formula, unless it is a plain number."""
    if cell.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


@contextlib.contextmanager
def _atomic_writer(out_path: Path) -> Iterator[IO[str]]:
    """Open a temp file beside `out_path`; move it onto `out_path` only if the block succeeds."""
    # UTF-8 with a BOM: without it Excel reads the file in the local code page and shows
    # Korean text as mojibake.
    try:
        tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed
            "w",
            encoding="utf-8-sig",
            newline="",  # the csv writer chooses line endings; keep "\n" inside cells as is
            delete=False,
            dir=out_path.parent,
            prefix=f".{out_path.name}.",
            suffix=".tmp",
        )
    except OSError as e:
        raise InputError(f"{out_path}: cannot write here: {e.strerror}") from None
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _default_mode(out_path.parent))  # NamedTemporaryFile: owner-only
        os.replace(tmp.name, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise


def _default_mode(folder: Path) -> int:
    """The umask's mode, but owner-only in an owner-only folder (the state directory's)."""
    if not folder.stat().st_mode & 0o077:
        return 0o600
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_path(out_path: Path, input_path: Path, overwrite: bool) -> None:
    """Raise `InputError` unless `out_path` can take the answers without harm."""
    out_path = Path(out_path)
    if _same_file(out_path, Path(input_path)):
        raise InputError(f"{out_path}: this is the input file; choose another output path with -o")
    if out_path.is_dir():
        raise InputError(f"{out_path}: this is a folder; give a file name such as answers.csv")
    folder = out_path.parent
    if not folder.is_dir():
        raise InputError(f"{out_path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{out_path}: cannot write to the folder {folder} (permission denied)")
    try:
        # What access() cannot tell: a read-only mount, a pseudo file system such as /proc,
        # a full disk. Found now, before anything is sent, not when the answers are written.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out_path.name}.", suffix=".tmp"):
            pass
    except OSError as e:
        message = f"{out_path}: cannot write to the folder {folder} ({e.strerror})"
        raise InputError(message) from None
    if out_path.exists() and not overwrite:
        raise InputError(
            f"{out_path} already exists; pass --overwrite to replace it, "
            "or -o to choose another path"
        )


def default_output_path(input_path: Path) -> Path:
    """`<input stem>.answers.csv` beside the input."""
    input_path = Path(input_path)
    return input_path.with_name(f"{input_path.stem}.answers.csv")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False
