"""The score of a graded answers CSV (its `correct` column, jobs/grade.py): right of graded,
the wrong rows, right/wrong by model, thread or any column, the judge's cost.

`regrade` grades a file again from its key column (`askbatch report answers.csv --expected
key`), asking nothing: a judge's verdict in the file is kept where the key does not decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jobs import grade
from jobs.report import answers as frames
from worker.errors import InputError
from worker.grading import Verdict
from worker.models import COMPLETED, Result
from worker.pricing import dollars

WRONG_SHOWN = 20


@dataclass
class Score:
    right: int
    graded: int
    wrong: pd.DataFrame  # row, label, question, key, answer
    by: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)  # name → right, wrong
    judged: int = 0
    cost: object = None  # Decimal of the judge's requests, or None

    def line(self) -> str:
        return grade.line(self.right, self.graded)


def column_of(header: list[str], name: str) -> str | None:
    """Our grade column `name` in a header: the rightmost `askbatch_…name` or `name`."""
    found = None
    for cell in header:
        plain = cell
        while plain.startswith(frames.CLASH_PREFIX) and plain != name:
            plain = plain[len(frames.CLASH_PREFIX) :]
        if plain == name:
            found = cell
    return found


def regrade(path: Path, terms: dict[str, str]) -> list[str]:
    """Every row's `correct` cell graded again from the file's own key and answers."""
    header = frames._header(path)
    key = terms["expected"]
    if key not in header:
        raise InputError(f"{path}: --expected {key}: the file has no column {key!r}")
    answer = f"answer.{terms['field']}" if terms.get("field") else "answer"
    names = {
        "status": column_of(header, "status"),
        "answer": column_of(header, answer) if terms.get("field") else column_of(header, "answer"),
        "correct": column_of(header, "correct"),
        "note": column_of(header, "grade_note"),
    }
    if names["answer"] is None:
        raise InputError(f"{path}: no {answer!r} column to grade")
    wanted = [key, *[n for n in names.values() if n]]
    cells: list[str] = []
    for chunk in frames._chunks(path, list(dict.fromkeys(wanted))):
        for row in chunk.itertuples(index=False):
            got = dict(zip(chunk.columns, row, strict=True))
            cells.append(_again(got, key, names, terms))
    return cells


def _again(got: dict, key: str, names: dict, terms: dict[str, str]) -> str:
    status = got.get(names["status"], "")
    result = Result(0, status, answer=got[names["answer"]])
    if terms.get("field"):
        result.extra = {f"answer.{terms['field']}": got[names["answer"]]}
    verdict: Verdict = grade.exact(result if status else None, got[key], terms)
    judged = names["note"] and str(got.get(names["note"], "")).startswith("judged by ")
    if verdict.correct is None and status == COMPLETED and judged:
        return str(got.get(names["correct"], ""))
    return grade.cell(verdict.correct)


def score(answers: frames.Answers, key: str, by: list[str]) -> Score | None:
    """The score of the frame's `correct` column; None when no row was graded."""
    f = answers.frame
    graded = f["correct"].isin([grade.YES, grade.NO])
    if not graded.any():
        return None
    wrong = f.loc[f["correct"] == grade.NO].head(WRONG_SHOWN)
    found = Score(
        right=int((f["correct"] == grade.YES).sum()),
        graded=int(graded.sum()),
        wrong=_texts(answers, wrong, key),
        judged=int(f["judged"].sum()),
        cost=dollars(f["grade_cost"].sum()) if f["grade_cost"].notna().any() else None,
    )
    groups = {"model": f["model"].astype(str)}
    for name in ["thread", *by]:
        if (values := _column(answers, name)) is not None:
            groups[name] = values
    for name, values in groups.items():
        table = pd.DataFrame({"g": values, "c": f["correct"].astype(str)})[graded]
        found.by[name] = [
            (str(g) or "(none)", int((t["c"] == grade.YES).sum()), int((t["c"] == grade.NO).sum()))
            for g, t in table.groupby("g", sort=True)
        ]
    return found


def _column(answers: frames.Answers, name: str) -> pd.Series | None:
    """An input column of every file of the frame, as strings; None if a file lacks it."""
    parts = []
    for path in answers.paths:
        if name not in frames._header(path):
            return None
        parts += [c for chunk in frames._chunks(path, [name]) for c in chunk[name]]
    return pd.Series(parts, index=answers.frame.index)


def _texts(answers: frames.Answers, wrong: pd.DataFrame, key: str) -> pd.DataFrame:
    """The wrong rows with label, question, key and answer read back from their files."""
    picked = answers.texts(wrong)
    keys, said = [], []
    for part, row in zip(picked["part"], picked["row"], strict=True):
        path = answers.paths[int(part)]
        header = frames._header(path)
        columns = [c for c in (key, column_of(header, "answer")) if c and c in header]
        cells = _row_cells(path, int(row), columns)
        keys.append(cells.get(key, ""))
        said.append(cells.get(column_of(header, "answer") or "", ""))
    return picked.assign(key=keys, answer=said)[["row", "label", "question", "key", "answer"]]


def _row_cells(path: Path, row: int, columns: list[str]) -> dict[str, str]:
    if not columns:
        return {}
    for n, chunk in enumerate(frames._chunks(path, columns)):
        first = n * frames.CHUNK + 1
        if first <= row < first + len(chunk):
            return dict(chunk.iloc[row - first])
    return {}


def text(s: Score) -> list[str]:
    """The score's lines in the summary."""
    lines = [s.line()]
    if s.judged:
        cost = "" if s.cost is None else f", ${s.cost:.6f}"
        lines.append(f"grading: {s.judged} rows judged by the model{cost} (grade_cost_usd)")
    if len(s.wrong):
        lines.append("wrong rows:")
        for r in s.wrong.itertuples():
            lines.append(
                f"  row {r.row} (id {r.label}): {snippet(r.question)} | key: {snippet(r.key, 30)}"
                f" | answer: {snippet(r.answer, 40, tail=True)}"
            )
        if (more := s.graded - s.right - len(s.wrong)) > 0:
            lines.append(f"  … and {more} more (the `correct` column says which)")
    return lines


def snippet(text: object, width: int = 50, tail: bool = False) -> str:
    """One line of `width` at most: the start, or the end (where an answer's result is)."""
    one = " ".join(str(text).split())
    if len(one) <= width:
        return one
    return "…" + one[-(width - 1) :] if tail else one[: width - 1] + "…"
