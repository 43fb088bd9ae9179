"""A profile's `[check]`: an answer is accepted only if it satisfies its problem's equation
(worker/equations.py) and the model, solving its problem again, gets the same numbers.

With `new`, a problem's equation must also differ from the request's example and from the
problems already accepted in its thread. Without a schema the row's own question is solved
again and the two final answers compared (a worksheet's consistency check).

Written for generated problems: a small model writes a wrong answer to its own problem far
more often than it solves a given problem wrongly (bundled model, README). When an answer
fails, askbatch tells the thread why and asks for another, up to `attempts` answers in
all; if none passes the row is `failed` with the reason in its error, so that every
`completed` row of the sheet has passed the check. Every request's tokens count for the row.

Agreement is by numbers, the one thing two wordings of a maths answer share: "x = 4/3" and
"\\boxed{\\frac{4}{3}}" agree, as sets of exact numbers ("1.333" is not 4/3). Numbers the
stated answer only repeats from the problem ("the roots of x^2 - 5x + 6 = 0 are 2 and 3")
may be missing from the solver's.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from typing import Any

from worker.equations import failed_substitution, find_equation, numbers
from worker.grading import final_answer, grade
from worker.models import COMPLETED, FAILED, Row, Usage
from worker.providers.base import Provider, Thread, Turn
from worker.retry import Retrier
from worker.tools import ToolLog


@dataclass(frozen=True)
class CheckRule:
    """The profile's `[check]` table (worker/profile.py checks it)."""

    question: str
    compare: str
    instructions: str
    attempts: int
    new: bool = False  # a problem's equation must not be the request's or an earlier one's

    @property
    def writes_problems(self) -> bool:
        """Whether the answers are problems (the question is made of their fields), not
        answers to the row's question."""
        names = {name for _, name, _, _ in string.Formatter().parse(self.question) if name}
        return bool(self.compare) and bool(names - {"question"})

    @property
    def requests(self) -> tuple[int, int]:
        """The fewest and most requests a row makes: an answer and its solving again, up to
        `attempts` times (substitution alone may fail an answer, with no solving)."""
        return 2, 2 * self.attempts

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckRule:
        return cls(**data)


@dataclass
class Check:
    """A job's [check] while one thread is answered: its rule, the provider that solves the
    answers again, and (for `new`) the equations of the thread's accepted problems, each
    with the row that wrote it."""

    rule: CheckRule
    solver: Provider
    seen: dict[str, str] = field(default_factory=dict)


def agrees(stated: str, solved: str, problem: str) -> bool:
    """Whether the solver's final answer has the stated answer's numbers (every number it
    gives is stated, and every stated number it lacks is one the problem holds too), or is
    the same answer as a teacher grades it (worker/grading: `1 1/3` for `x = 4/3`, an
    equivalent equation), decimals exact."""
    got = numbers(solved)
    said = numbers(stated)
    if got and got <= said and said - got <= numbers(problem):
        return True
    return grade(solved, stated, rounding=False).correct is True


def question_for(rule: CheckRule, answer: str, asked: str) -> tuple[str, str]:
    """(the question the solver is asked, the stated answer to compare with), from an
    answer to the row's question `asked`: the fields of a structured answer, or its text's
    final answer."""
    if not rule.compare:
        return rule.question.format(answer=answer, question=asked), final_answer(answer)
    fields = json.loads(answer)
    cells = {
        k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in fields.items()
    }
    cells.setdefault("question", asked)  # an answer field of that name comes first
    # A field the answer left out (not required by its schema) reads as empty.
    return rule.question.format_map(_Blank(cells)), cells.get(rule.compare, "")


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def fault(
    check: Check,
    row: Row,
    question: str,
    stated: str,
    retrier: Retrier,
    usage: Usage,
    follow_up: bool = False,
) -> str | None:
    """What is wrong with an answer ("x = 1/2 does not satisfy ...", "solving the problem
    again gave ..."), or None when it passes; `question` and `stated` are `question_for`'s.
    The solver's tokens are added to `usage`.

    A `follow_up` (a later turn of its thread) answering the row's own question is checked by
    substitution only: its question ("and another one?") means nothing without the thread,
    and the solver sees none."""
    rule, solver = check.rule, check.solver
    if rule.new and (repeated := _repeated(check, row, question)):
        return repeated
    if wrong := failed_substitution(question, stated):
        return wrong  # decided by arithmetic: no request needed
    if follow_up and not rule.writes_problems:
        return None
    ask = Row(row.index, row.id, question, model=row.model, instructions=rule.instructions)
    solution = solver.ask(solver.open_thread(retrier), ask, retrier, ToolLog())
    usage.add(solution.usage)
    # A solution cut off (at its token cap) vouches for nothing: another problem is asked.
    if solution.status != COMPLETED:
        return f"solving the problem again ended {solution.status}, not at {stated[:200]!r}"
    solved = final_answer(solution.answer)
    if agrees(stated, solved, question):
        return None
    return f"solving the problem again gave {solved[:200]!r}, not {stated[:200]!r}"


def _repeated(check: Check, row: Row, question: str) -> str | None:
    equation = find_equation(question)
    if equation is None:
        return None
    example = find_equation(row.question)
    if example is not None and example.key == equation.key:
        return f"{equation.text} is the request's own example, not a new problem"
    if equation.key in check.seen:
        return f"{equation.text} repeats the problem of row {check.seen[equation.key]}"
    return None


def _accept(check: Check, row: Row, question: str) -> None:
    if check.rule.new and (equation := find_equation(question)):
        check.seen.setdefault(equation.key, row.id)


def checked(
    check: Check,
    provider: Provider,
    thread: Thread,
    row: Row,
    first: Turn,
    retrier: Retrier,
    tools: ToolLog,
    valid: Any,
    follow_up: bool = False,
) -> Turn:
    """Check `first` (the row's answer) and ask again until one passes or `attempts` answers
    have been written; returns the last answer's turn with the usage of every request.

    `valid(turn)` says whether an answer is well formed (its schema): one that is not is
    returned as it is, for the row's result to say why. `follow_up`: see `fault`.
    """
    usage = Usage()
    turn = first
    attempts = check.rule.attempts
    for attempt in range(1, attempts + 1):
        usage.add(turn.usage)
        if turn.status != COMPLETED or not valid(turn):
            break
        question, stated = question_for(check.rule, turn.answer, row.question)
        wrong = fault(check, row, question, stated, retrier, usage, follow_up)
        if wrong is None:
            _accept(check, row, question)
            break
        if attempt == attempts:
            turn.status = FAILED
            turn.error = f"check: {wrong} ({attempt} answer(s) written, none passed)"
            break
        # Told in its own thread, so the model sees what it wrote and what was wrong. The
        # request is repeated: after a few turns a small model forgets what it was asked.
        if check.rule.writes_problems:
            again = f"Write a new problem for the request {row.question!r}, with a right answer."
        else:
            again = f"Answer {row.question!r} again, checking each step."
        again = f"Checked: {wrong}. {again}"
        retry = Row(row.index, row.id, again, row.thread, row.model, row.instructions)
        turn = provider.ask(thread, retry, retrier, tools)
    turn.usage = usage
    return turn
