"""A worksheet's answer key: its column (`terms`, checked before anything is sent), each row's
verdict in the answers file (`Grader`), and a job's score so far (`score`: status, the page).

Verdicts are worked out whenever the answers file is written, from the stored answers and
the key (worker/grading.py), so `resume` and `collect` grade again for nothing; only a
judge's verdicts (jobs/judge.py) are stored, in the job's judge job, and never asked twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from jobs.intake import Worksheet
from worker.errors import ConfigError, InputError
from worker.grading import Verdict, grade
from worker.models import COMPLETED, JobSpec, Result, money
from worker.profile import Profile
from worker.settings import Settings
from worker.store import Store

KEY = "expected"  # the key's column when none is named
COLUMNS = ("correct", "grade_note")
JUDGED_COLUMNS = (*COLUMNS, "grade_cost_usd")
YES, NO = "yes", "no"
JUDGE_SUFFIX = ".grade"
CHUNK = 1000


def terms(settings: Settings, sheet: Worksheet, profile: Profile) -> dict[str, str]:
    """JobSpec.grade for a new job: the key's column (`--expected`, the profile's [grade],
    else `expected` if the sheet has it), the field graded and the judge; {} for no key.
    A named column the sheet lacks is bad input, before anything is sent."""
    table = profile.grade or {}
    column = settings.expected or table.get("expected", "")
    if column and column not in sheet.columns:
        raise InputError(
            f"{sheet.path}: --expected {column}: the worksheet has no column {column!r} "
            f"(its columns: {', '.join(sheet.columns)})"
        )
    column = column or (KEY if KEY in sheet.columns else "")
    judge = settings.grade_with or table.get("model", "")
    wanted = settings.grade_field or table.get("field", "")
    if not column:
        if settings.grade_with or settings.grade_field:
            flag = "--grade-with" if settings.grade_with else "--grade-field"
            raise ConfigError(
                f"{flag} grades against an answer key: add a column named {KEY!r} to "
                f"{sheet.path.name}, or name one with --expected COLUMN"
            )
        return {}
    fields = [name.removeprefix("answer.") for name in profile.answer_columns()]
    if wanted and wanted not in fields:
        known = ", ".join(fields) if fields else "none: the profile has no response_format"
        raise ConfigError(f"--grade-field {wanted}: not a field of the answers (fields: {known})")
    if not wanted and fields:
        wanted = "answer" if "answer" in fields else ""
    return {"expected": column, "field": wanted, "judge": judge}


def judge_id(job_id: str) -> str:
    """The id of the job that holds a job's judge verdicts."""
    return job_id + JUDGE_SUFFIX


def graded_text(result: Result, terms: dict[str, str]) -> str | None:
    """What is graded of a row's answer: its text, or its `answer.<field>`; None when the
    answers are structured and no field is named."""
    if terms.get("field"):
        return result.extra.get(f"answer.{terms['field']}", "")
    return None if result.extra else result.answer


def exact(result: Result | None, key: str, terms: dict[str, str]) -> Verdict:
    """A row's verdict from the key alone; `correct` None with why when not graded."""
    if not key.strip():
        return Verdict(None, "not graded: no key")
    if result is None:
        return Verdict(None, "not graded: no answer yet")
    if result.status != COMPLETED:
        return Verdict(None, f"not graded: the row ended {result.status}")
    text = graded_text(result, terms)
    if text is None:
        return Verdict(None, "not graded: structured answers: name the field with --grade-field")
    return grade(text, key)


def cell(correct: bool | None) -> str:
    return "" if correct is None else YES if correct else NO


@dataclass
class Grader:
    """The grade cells of an answers file, row by row, with the judge's stored verdicts."""

    terms: dict[str, str]
    key_at: int
    judged: Callable[[list[int]], dict[int, Result]] | None = None
    verdicts: dict[int, Result] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return JUDGED_COLUMNS if self.terms.get("judge") else COLUMNS

    def fetching(self, fetch: Callable[[list[int]], dict[int, Result]]):
        """`fetch` that also reads the judge's verdicts on the same rows."""

        def both(indices: list[int]) -> dict[int, Result]:
            if self.judged is not None:
                self.verdicts = self.judged(indices)
            return fetch(indices)

        return both

    def cells(self, cells: list[str], result: Result | None) -> list[str]:
        verdict = exact(result, cells[self.key_at], self.terms)
        cost = ""
        if verdict.correct is None and result is not None and result.status == COMPLETED:
            verdict, cost = self._judged(verdict, self.verdicts.get(result.index))
        row = [cell(verdict.correct), verdict.note]
        return [*row, cost] if self.terms.get("judge") else row

    def _judged(self, verdict: Verdict, judged: Result | None) -> tuple[Verdict, str]:
        model = self.terms.get("judge")
        if verdict.note.startswith("not graded:"):
            return verdict, ""
        if not model:
            return Verdict(None, f"not graded: {verdict.note}; --grade-with MODEL judges it"), ""
        if judged is None or judged.status == "skipped":
            return Verdict(None, f"not graded: not judged yet ({verdict.note})"), ""
        cost = money(judged.cost_usd)
        if judged.status != COMPLETED:
            why = judged.error or judged.status
            return Verdict(None, f"not graded: the judge's request ended {why}"), cost
        said = judged.extra.get("answer.correct", "")
        reason = " ".join(judged.extra.get("answer.reason", "").split())[:300]
        return Verdict(said == "true", f"judged by {judged.model or model}: {reason}"), cost


def for_job(store: Store, spec: JobSpec, sheet: Worksheet) -> Grader | None:
    """The grader of a job's answers file, or None when its sheet has no key."""
    if not spec.grade:
        return None
    judged = None
    if spec.grade.get("judge"):
        judged = lambda idx: _stored(store, judge_id(spec.job_id), idx)  # noqa: E731
    return Grader(spec.grade, sheet.columns.index(spec.grade["expected"]), judged)


def _stored(store: Store, job_id: str, indices: list[int]) -> dict[int, Result]:
    try:
        return store.get(job_id, indices)
    except KeyError:
        return {}


@dataclass
class Score:
    """How many graded rows are right, and the first wrong ones (row, question, key, answer)."""

    right: int = 0
    graded: int = 0
    wrong: list[tuple[int, str, str, str]] = field(default_factory=list)

    def add(self, row: int, correct: str, question: str, key: str, answer: str) -> None:
        if correct not in (YES, NO):
            return
        self.graded += 1
        if correct == YES:
            self.right += 1
        elif len(self.wrong) < 20:
            self.wrong.append((row, question, key, answer))

    def line(self) -> str:
        return line(self.right, self.graded)


def line(right: int, graded: int) -> str:
    """ "37 of 40 graded rows correct (92.5 %)"."""
    if not graded:
        return "no graded rows yet"
    percent = f"{100 * right / graded:.1f}".removesuffix(".0")
    return f"{right} of {graded} graded rows correct ({percent} %)"


def score(store: Store, spec: JobSpec, sheet: Worksheet) -> Score | None:
    """The job's score from what its store holds (status, the page); None without a key."""
    grader = for_job(store, spec, sheet)
    if grader is None:
        return None
    question = sheet.columns.index("question")
    found = Score()
    for index, cells, result in _judged_rows(grader, store, spec, sheet):
        correct = grader.cells(cells, result)[0]
        answer = "" if result is None else (graded_text(result, spec.grade) or result.answer)
        found.add(index + 1, correct, cells[question], cells[grader.key_at], answer)
    return found


def _judged_rows(grader: Grader, store: Store, spec: JobSpec, sheet: Worksheet):
    """(index, input cells, stored result) of every row, with the judge's verdicts read."""
    records = enumerate(sheet.records())
    fetch = grader.fetching(lambda idx: store.get(spec.job_id, idx))
    while chunk := list(islice(records, CHUNK)):
        results = fetch([i for i, _ in chunk])
        for index, cells in chunk:
            yield index, cells, results.get(index)
