"""An answers CSV read back for the report: one lean frame of numbers, a row per input row.

A 1,000,000-row file must be summarised at the end of a run in far less memory than a frame of
Python strings takes (600 MB for the first version of this, which kept every cell as a
string). So the file is read in chunks, each turned into numbers at once: tokens, latency and
attempts as integers and floats; the cost as whole nano-dollars (what askbatch writes: nine
decimals, so exact; a finer cell from elsewhere is rounded up, as the spending ledger counts
it: worker.pricing.nano); status, model
and tier as categories. The input's own id and question, the only free text the report shows,
are not kept: `texts()` reads them back for the few rows shown (the costliest, or every row of
a small file).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from jobs import grade
from jobs.csvout import CLASH_PREFIX
from jobs.report import priced
from worker import pricing
from worker.errors import InputError
from worker.models import RESULT_COLUMNS, Usage

TOKEN_KINDS = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens")
NUMBERS = (*TOKEN_KINDS, "total_tokens", "latency_s", "attempts")
CATEGORIES = ("status", "model", "service_tier", "correct")
WANTED = (*CATEGORIES, *NUMBERS, "cost_usd", "grade_cost_usd", "grade_note")
TEXTS = ("id", "question")
CHUNK = 100_000  # rows parsed at a time: a few tens of MB of strings at most


@dataclass
class Answers:
    """One answers CSV (or several, combined) as a frame: our columns under their plain names,
    `cost` in nano-dollars (<NA> where unknown), `row` the 1-based row number, `part` which of
    `paths` the row came from."""

    path: Path
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    key: str = ""  # the answer key's column, when the rows were graded (jobs/grade.py)

    def texts(self, picked: pd.DataFrame) -> pd.DataFrame:
        """`picked` (rows of the frame) with `label` (the input's id, else the row number;
        prefixed with the file's name when several are combined) and `question` added."""
        by_part: dict[int, list[int]] = {}
        for part, row in zip(picked["part"], picked["row"], strict=True):
            by_part.setdefault(int(part), []).append(int(row))
        found = {part: _read_texts(self.paths[part], rows) for part, rows in by_part.items()}
        labels, questions = [], []
        for part, row in zip(picked["part"], picked["row"], strict=True):
            label, question = found[int(part)].get(int(row), ("", ""))
            label = label or str(row)
            if len(self.paths) > 1:
                label = f"{self.paths[int(part)].name}:{label}"
            labels.append(label)
            questions.append(question)
        return picked.assign(label=labels, question=questions)


def load(
    path: Path,
    prices: pricing.PriceBook = pricing.NO_PRICES,
    base_url: str = "",
    provider: str = "",
    key: str = "",
) -> Answers:
    """Read an answers CSV; a file that is not one is an InputError naming it. `prices`,
    `base_url` and `provider` are how its job was priced (for rows without cost_usd, the
    standard price of tiered rows, and which rows a gateway's list price priced). `key` is
    the answer key's column (default `expected`, if the file has one)."""
    path = Path(path)
    header = _header(path)
    ours = _result_columns(header)
    missing = [c for c in ("status", "prompt_tokens", "completion_tokens") if c not in ours]
    if missing:
        raise InputError(
            f"{path}: not an askbatch answers CSV (no {missing[0]!r} column); "
            "give the file that `askbatch run` wrote"
        )
    use = {v: k for k, v in ours.items() if k in WANTED}
    chunks = []
    try:
        for chunk in _chunks(path, list(use)):
            at = len(chunks) * CHUNK
            chunks.append(_lean(chunk.rename(columns=use), path, ours, at, prices, base_url))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read as CSV: {str(e).splitlines()[0]}") from None
    if not chunks:
        chunks.append(_lean(pd.DataFrame(columns=list(ours)), path, ours, 0, prices, base_url))
    frame = _concat(chunks)
    frame["row"] = np.arange(1, len(frame) + 1, dtype="int32")
    frame["part"] = np.int16(0)
    notes: list[str] = []
    if "cost_usd" not in ours:
        notes.append(
            "this file has no cost_usd column (written before askbatch priced rows): costs "
            "computed now from its models and tokens"
        )
    # A row that reached the API made at least one attempt; skipped, cancelled before it
    # started and pending rows made none.
    frame["sent"] = frame["attempts"] > 0
    frame["no_usage"] = frame["sent"] & frame["no_usage"]
    used = (frame["prompt_tokens"] + frame["completion_tokens"]) > 0
    frame["unpriced"] = frame["cost"].isna() & used
    priced.annotate(frame, prices, base_url, provider)
    frame["cost_order"] = frame["cost"].fillna(-1).astype("int64")
    key = key or (grade.KEY if grade.KEY in header else "")
    return Answers(path, frame, notes, [path], key)


def combine(many: list[Answers]) -> Answers:
    """Several answers CSVs as one, for the total over files."""
    paths = [p for a in many for p in a.paths]
    frames, offset = [], 0
    for a in many:
        frames.append(a.frame.assign(part=a.frame["part"] + offset))
        offset += len(a.paths)
    frame = _concat(frames)
    return Answers(Path(f"all {len(many)} files"), frame, [], paths, many[0].key if many else "")


def _lean(
    chunk: pd.DataFrame,
    path: Path,
    ours: dict[str, str],
    at: int,
    prices: pricing.PriceBook,
    base_url: str,
) -> pd.DataFrame:
    """A chunk of string cells (rows `at`.. of the file) as numbers and categories."""
    chunk = chunk.reset_index(drop=True)
    lean = pd.DataFrame(index=chunk.index)
    # Empty token cells on a row that was sent: the server reported no usage (not 0 tokens).
    lean["no_usage"] = chunk["prompt_tokens"] == "" if "prompt_tokens" in chunk else False
    for name in NUMBERS:
        cells = chunk[name] if name in chunk else pd.Series("0", index=chunk.index)
        lean[name] = _numbers(cells, path, ours.get(name, name), at)
    for name in CATEGORIES:
        cells = chunk[name] if name in chunk else pd.Series("", index=chunk.index)
        lean[name] = pd.Categorical(cells.astype(str))
    if "cost_usd" in chunk:
        cost = [_nanos(v, path, at + i) for i, v in enumerate(chunk["cost_usd"])]
    else:
        cost = _price_now(lean, prices, base_url)
    lean["cost"] = pd.array(cost, dtype="Int64")
    grade_cost = chunk["grade_cost_usd"] if "grade_cost_usd" in chunk else [""] * len(chunk)
    lean["grade_cost"] = pd.array(
        [_nanos(v, path, at + i) for i, v in enumerate(grade_cost)], dtype="Int64"
    )
    notes = chunk["grade_note"] if "grade_note" in chunk else pd.Series("", index=chunk.index)
    lean["judged"] = notes.str.startswith("judged by ")
    return lean


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames one after another; categories merged (pd.concat would turn them to strings)."""
    joined = pd.concat([f.drop(columns=list(CATEGORIES)) for f in frames], ignore_index=True)
    for name in CATEGORIES:
        joined[name] = union_categoricals([f[name].array for f in frames])
    return joined


def _chunks(path: Path, columns: list[str]) -> Iterator[pd.DataFrame]:
    """The file's `columns` as strings, CHUNK rows at a time."""
    reader = pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
        usecols=columns,
        index_col=False,  # a ragged row must never shift the columns
        engine="c",
        chunksize=CHUNK,
    )
    with reader:
        yield from reader


def _header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None


def _result_columns(header: list[str]) -> dict[str, str]:
    """Our column name → its header name. Ours come after the input's, so where the input
    had a column of the same name, ours is the rightmost one ("askbatch_model")."""
    found: dict[str, str] = {}
    for name in header:
        plain = name
        while plain.startswith(CLASH_PREFIX) and plain not in (
            *RESULT_COLUMNS,
            *grade.JUDGED_COLUMNS,
        ):
            plain = plain[len(CLASH_PREFIX) :]
        if plain in RESULT_COLUMNS or plain in grade.JUDGED_COLUMNS:
            found[plain] = name
    return found


def _input_columns(header: list[str]) -> dict[str, str]:
    """The input's own id and question columns (plain name → header name), if it has them."""
    ours = set(_result_columns(header).values())
    return {c: c for c in TEXTS if c in header and c not in ours}


def _read_texts(path: Path, rows: list[int]) -> dict[int, tuple[str, str]]:
    """Row number → (id, question) for `rows` of the file, read in chunks."""
    columns = _input_columns(_header(path))
    if not columns:
        return {}
    wanted, found = set(rows), {}
    for n, chunk in enumerate(_chunks(path, list(columns))):
        first = n * CHUNK + 1
        for row in wanted & set(range(first, first + len(chunk))):
            cells = chunk.iloc[row - first]
            found[row] = (cells.get("id", ""), cells.get("question", ""))
        if len(found) == len(wanted):
            break
    return found


def _numbers(cells: pd.Series, path: Path, column: str, at: int) -> pd.Series:
    values = pd.to_numeric(cells.replace("", "0"), errors="coerce")
    if values.isna().any():
        bad = int(values.isna().to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}, row {at + bad + 2}, column {column!r}: {cells.iloc[bad]!r} is not a number"
        )
    # Half the memory of int64, and no row's tokens or attempts come near 2**31 (sums are
    # taken in int64 all the same).
    if values.dtype.kind in "iu" and (values.empty or values.abs().max() < 2**31):
        return values.astype("int32")
    return values


def _nanos(cell: str, path: Path, at: int) -> int | None:
    if cell == "":
        return None
    try:
        return pricing.nano(Decimal(cell))
    except InvalidOperation:
        raise InputError(
            f"{path}, row {at + 2}, column 'cost_usd': {cell!r} is not an amount"
        ) from None


def _price_now(frame: pd.DataFrame, prices: pricing.PriceBook, base_url: str) -> list:
    cost: list[int | None] = []
    for model, p, c, cached, reasoning in zip(
        frame["model"],
        frame["prompt_tokens"].astype(int),
        frame["completion_tokens"].astype(int),
        frame["cached_tokens"].astype(int),
        frame["reasoning_tokens"].astype(int),
        strict=True,
    ):
        usage = Usage(int(p), int(c), int(p + c), int(cached), int(reasoning))
        value = pricing.cost(model, usage, base_url=base_url, prices=prices)
        cost.append(None if value is None else pricing.nano(value))
    return cost
