"""The judge: with `--grade-with MODEL` (or a profile's [grade] model), rows the key does not
decide exactly are asked of MODEL with a fixed rubric, in a schema (`correct`, `reason`).

Nothing is asked without it.

The judge's requests are a job of their own, `<job>.grade`, answered by the same machinery
as the answers (jobs/submit.answer_job: paced by the job's limits, priced, retried, on the
workers when the job has a broker, offline with --provider local) with what is left of the
job's spending cap. Its results are stored like any row's, so a resumed job never asks the
judge twice; jobs/grade.py reads them when the answers file is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from itertools import islice

from jobs import grade
from jobs.intake import Worksheet
from jobs.submit import answer_job
from worker import runtime
from worker.models import COMPLETED, SKIPPED, JobSpec, Result, Row
from worker.pricing import dollars
from worker.profile import Profile
from worker.providers import registry
from worker.settings import Settings
from worker.store import Store

RUBRIC = (
    "You grade a student's answer against the answer key, as a careful teacher would. "
    "The answer is correct when its final answer means the same as the key: wording, "
    "order, spelling slips, units left out and equivalent forms may differ; a different "
    "final answer, a missing one, or one that hedges between several is not correct. "
    "Reply with correct (true or false) and reason (one short sentence)."
)
SCHEMA = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["correct", "reason"],
    "additionalProperties": False,
}
# A row the judge is not asked about (decided by the key, or no answer yet): stored so that
# the judge job's count of rows done reaches its total; dropped once the row needs asking.
NOT_ASKED = "not asked: decided by the key, or no answer to judge"
MAX_ANSWER_CHARS = 4000


def prompt(question: str, key: str, answer: str) -> str:
    """What the judge reads for one row."""
    return (
        f"Question:\n{question}\n\nAnswer key:\n{key}\n\n"
        f"Student's answer:\n{answer[-MAX_ANSWER_CHARS:]}"
    )


def judge(
    settings: Settings, store: Store, spec: JobSpec, sheet: Worksheet, say: Callable[[str], None]
) -> int:
    """Ask the judge about every answered row the key does not decide and that it has not
    judged yet; returns how many were asked."""
    model = spec.grade.get("judge") if spec.grade else ""
    if not model:
        return 0
    asks = dict(_undecided(store, spec, sheet))
    judging = _judge_spec(store, spec, model)
    if judging is None:
        say(f"grading: the spending cap of ${spec.max_cost} is spent; the judge is not asked")
        return 0
    done = _stored(store, judging.job_id, spec.total)
    fresh = [i for i in asks if i not in done or done[i].error == NOT_ASKED]
    store.drop(judging.job_id, (SKIPPED,), [i for i in fresh if i in done])
    placeholders = [i for i in range(spec.total) if i not in asks and i not in done]
    for start in range(0, len(placeholders), grade.CHUNK):
        chunk = placeholders[start : start + grade.CHUNK]
        store.save_many(judging.job_id, [Result(i, SKIPPED, error=NOT_ASKED) for i in chunk])
    if fresh:
        say(f"grading: asking {model} about {len(fresh)} rows the key does not decide")
        rows = ([Row(i, str(i + 1), asks[i], model=model)] for i in fresh)
        answer_job(settings, store, judging, rows, show=lambda progress: None)
    return len(fresh)


def _undecided(store: Store, spec: JobSpec, sheet: Worksheet):
    """(row, the judge's prompt) of each answered row the key does not decide."""
    key_at = sheet.columns.index(spec.grade["expected"])
    question_at = sheet.columns.index("question")
    records = enumerate(sheet.records())
    while chunk := list(islice(records, grade.CHUNK)):
        results = store.get(spec.job_id, [i for i, _ in chunk])
        for index, cells in chunk:
            result = results.get(index)
            if result is None or result.status != COMPLETED:
                continue
            verdict = grade.exact(result, cells[key_at], spec.grade)
            if verdict.correct is None and not verdict.note.startswith("not graded:"):
                text = grade.graded_text(result, spec.grade) or ""
                yield index, prompt(cells[question_at], cells[key_at], text)


def _judge_spec(store: Store, spec: JobSpec, model: str) -> JobSpec | None:
    """The judge job (made the first time): the answers' job with the judge's model, rubric
    and schema, and the spending cap's remainder; None when the cap is spent."""
    job_id = grade.judge_id(spec.job_id)
    try:
        return store.spec(job_id)
    except KeyError:
        pass
    cap = ""
    if spec.max_cost:
        left = Decimal(spec.max_cost) - dollars(store.progress(spec.job_id).cost_nusd)
        if left <= 0:
            return None
        cap = str(left)
    profile = Profile(
        name="grader",
        instructions=RUBRIC,
        response_format={"name": "verdict", "schema": SCHEMA, "strict": True},
    )
    judging = replace(
        spec,
        job_id=job_id,
        model=model,
        instructions=RUBRIC,
        profile=profile.to_json(),
        assistant_id="",
        continue_on_error=True,
        max_cost=cap,
        service_tier="",
        batch=False,  # asked at once, even for a --batch job: a few rows, wanted now
        grade={},
    )
    judging = registry.get(judging.provider).set_up(runtime.client(spec.base_url), judging)
    store.create_job(judging)
    return judging


def _stored(store: Store, job_id: str, total: int) -> dict[int, Result]:
    found: dict[int, Result] = {}
    for start in range(0, total, grade.CHUNK):
        found.update(store.get(job_id, range(start, min(start + grade.CHUNK, total))))
    return found
