"""Coming back to a job by its id: find it, report on it, cancel it, prepare it to resume.

A job lives where its results do: an embedded job in a SQLite file under the state directory
(`<state_dir>/jobs/<job>.sqlite`), a distributed one in Redis (found through the broker URL).
The CLI's `status` and `collect` are thin layers over these functions; resuming and cancelling
go through jobs/job.py, which every front end calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from jobs import batches, grade, pace
from jobs.csvout import write_job
from jobs.intake import Worksheet
from jobs.record import DISTRIBUTED, EMBEDDED, JobRecord, check_worksheet, input_key
from jobs.submit import task_groups
from worker import runtime
from worker.errors import ConfigError
from worker.fatal import is_halt
from worker.models import CANCELLED, EXPIRED, FAILED, SKIPPED, JobSpec, Result
from worker.pricing import dollars
from worker.settings import Settings, mask_url
from worker.store import Jobs, LocalStore, Progress, Results, Store

# `--retry-failed` asks again the rows that ended without an answer for a reason that may pass.
RETRY_STATUSES = (FAILED, EXPIRED, CANCELLED)
CANCEL_REASON = "not sent: the job was cancelled (askbatch cancel)"
BLANK_REASON = "blank question; not sent"
CHUNK = 1000

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass
class Job:
    id: str
    settings: Settings  # configured for the job's mode: no broker for an embedded job
    store: Store
    spec: JobSpec
    record: JobRecord

    @property
    def where(self) -> str:
        if self.record.mode == EMBEDDED:
            return f"embedded, {self.settings.state_dir}"
        return f"distributed, {mask_url(self.settings.broker_url)}"


def connect_store(settings: Settings) -> Store:
    """The process's store for these settings, with Redis checked to be reachable."""
    store = runtime.store()
    if settings.broker_url:
        try:
            store.check()
        except redis.RedisError as exc:
            raise ConfigError(
                f"cannot reach Redis at {mask_url(settings.broker_url)}: {exc}. "
                "Start redis-server, or fix --broker / ASKBATCH_BROKER_URL."
            ) from None
    return store


def use(settings: Settings) -> Store:
    """Configure this process for these settings (a command works on one job) and connect
    to their store."""
    runtime.configure(settings)
    if settings.broker_url:
        from worker import app as celery_app

        celery_app.configure(settings)
    return connect_store(settings)


def locate(settings: Settings, job_id: str, use: Callable[[Settings], Store] = use) -> Job:
    """The job with this id: on local disk first, else in the broker's Redis.

    `use` gives the store for the job's settings; by default it configures this process for
    them (a command works on one job). A server holding many jobs passes its own stores."""
    if not _JOB_ID.fullmatch(job_id):
        raise ConfigError(f"{job_id!r} is not a job id (they look like 20250301-142501-1a2b3c)")
    if LocalStore(settings.state_dir).path(job_id).exists():
        settings = settings.with_(broker_url="")
        where = f"{settings.state_dir}"
    elif settings.broker_url:
        where = mask_url(settings.broker_url)
    else:
        raise ConfigError(
            f"no job {job_id} in {settings.state_dir}. A job that ran on workers is found "
            "through its broker: give --broker or set ASKBATCH_BROKER_URL."
        )
    store = use(settings)
    try:
        spec = store.spec(job_id)
    except KeyError:
        raise ConfigError(f"no job {job_id} in {where}") from None
    try:
        record = JobRecord.from_json(store.record(job_id))
    except KeyError:
        raise ConfigError(
            f"job {job_id} has no record of its worksheet, so it cannot be collected or resumed"
        ) from None
    return Job(job_id, settings, store, spec, record)


def latest_job(settings: Settings, worksheet: Path) -> str | None:
    """The id of the newest job of this worksheet path: on local disk, else in Redis."""
    key = input_key(worksheet)
    if job_id := LocalStore(settings.state_dir).latest_job(key):
        return job_id
    if settings.broker_url:
        return use(settings).latest_job(key)
    return None


def remember(store: Jobs, spec: JobSpec, record: JobRecord) -> None:
    store.set_record(spec.job_id, record.to_json(), input_key(Path(record.input)))


# --- status -----------------------------------------------------------------------------


def all_results(store: Results, job_id: str, total: int) -> Iterator[Result]:
    for start in range(0, total, CHUNK):
        yield from store.get(job_id, range(start, min(start + CHUNK, total))).values()


def status_report(job: Job) -> str:
    """What `askbatch status` prints: counts by status, tokens and cost so far, and state."""
    spec, record, store = job.spec, job.record, job.store
    progress = store.progress(job.id)
    cost, unpriced = dollars(progress.cost_nusd), progress.unpriced
    statuses = ", ".join(
        f"{n} {s}" for s, n in sorted(progress.by_status.items(), key=lambda kv: -kv[1]) if n
    )
    lines = [
        f"job {job.id} ({job.where}), created {record.created}",
        f"  {spec.provider} provider, {spec.model}",
        f"  worksheet: {record.input} ({record.encoding}, {spec.total} rows)",
        f"  rows: {progress.done} of {spec.total} have a result"
        + (f": {statuses}" if statuses else ""),
        f"  tokens: {progress.prompt_tokens:,} prompt + {progress.completion_tokens:,} "
        f"completion = {progress.total_tokens:,}",
        f"  cost so far: ${cost:.6f}"
        + (f" (+ {unpriced} rows of unpriced models)" if unpriced else ""),
        f"  retries: {progress.retries:,}",
        *(batches.status_lines(store, spec) if spec.batch else ()),
        *([f"  score: {line}"] if (line := _score(job)) else []),
        f"  state: {state_line(job, progress)}",
        *[f"  pace: {text}" for text in [pace.line(pace.reports(store, job.id))] if text],
        f"  answers: {record.output}"
        + ("" if Path(record.output).exists() else " (not written yet: askbatch collect)"),
    ]
    return "\n".join(lines)


def _score(job: Job) -> str:
    """ "37 of 40 graded rows correct (92.5 %)" for a job with an answer key."""
    if not job.spec.grade:
        return ""
    found = grade.score(job.store, job.spec, check_worksheet(job.record, job.id))
    return found.line() if found else ""


def state_line(job: Job, progress: Progress) -> str:
    """Whether the job is still going, and what to do next, in a line."""
    stop = job.store.stopped(job.id)
    left = job.spec.total - progress.done
    if left <= 0:
        return "finished" + (f" ({stop.reason})" if stop else "")
    if is_halt(stop):
        return f"halted: {stop.reason}; {left} rows not asked yet (then: askbatch resume {job.id})"
    if stop:
        return f"stopping: {stop.reason}; {left} rows without a result yet"
    if job.record.mode == EMBEDDED:
        if job.store.busy(job.id):
            return f"running in another askbatch process; {left} rows to go"
        if job.spec.batch:
            return (
                f"not running; {left} rows without a result. Batches out go on at the API: "
                f"`askbatch resume {job.id}` picks them up"
            )
        return f"not running; {left} rows without a result (askbatch resume {job.id})"
    return (
        f"{left} rows without a result: being answered if workers are running "
        f"(otherwise: askbatch resume {job.id})"
    )


# --- collect ----------------------------------------------------------------------------


def collect(job: Job, out: Path, sanitize: bool = True) -> Progress:
    """Write the job's answers CSV from what is done (`askbatch collect`, the page's download)."""
    write_answers(job, check_worksheet(job.record, job.id), out, sanitize)
    return job.store.progress(job.id)


def write_answers(job: Job, sheet: Worksheet, out: Path, sanitize: bool = True) -> None:
    """The one place a job's answers CSV is written (by `collect`, and when a run ends): rows
    without a result yet are `pending`, with a halt's reason when one stopped the job."""
    stop = job.store.stopped(job.id)
    reason = f"not asked: {stop.reason}" if is_halt(stop) else ""
    write_job(job.store, job.spec, sheet, out, sanitize=sanitize, pending_reason=reason)


# --- cancel -----------------------------------------------------------------------------


def cancel(job: Job) -> str:
    """Stop the job: no row starts from now on; rows nobody is answering become `cancelled`."""
    store, spec = job.store, job.spec
    missing = store.missing(job.id, spec.total)
    if not missing:
        return f"job {job.id} has already finished; nothing to cancel"
    if spec.batch:
        distributed = job.record.mode != EMBEDDED
        return batches.cancel(store, spec, CANCEL_REASON, store.busy(job.id), distributed)
    store.stop(job.id, CANCELLED, CANCEL_REASON)
    if store.busy(job.id):
        return (
            f"job {job.id}: cancelling. The askbatch process running it starts no more rows, "
            "cancels the runs it has in flight where the API allows, and writes its CSV."
        )
    marked = store.mark_unstarted(job.id, missing, CANCELLED, CANCEL_REASON)
    message = f"job {job.id}: cancelled; {marked} rows not started are marked cancelled"
    if in_flight := len(missing) - marked:
        message += (
            f"; {in_flight} rows in flight end on their own: Assistants runs are cancelled, "
            "Responses and Chat requests cannot be recalled and keep their answers"
        )
    return message


# --- resume -----------------------------------------------------------------------------


def prepare_resume(job: Job, sheet: Worksheet, retry_failed: bool) -> tuple[list[int], int]:
    """Make the job ready to go on: returns (rows to ask, results dropped for --retry-failed).

    A cancel is lifted (resuming is the user's wish to go on). Blank questions left without a
    result by a crash are recorded `skipped` here, as `run` does.
    """
    store, spec = job.store, job.spec
    dropped = drop_failed(store, spec, sheet) if retry_failed else 0
    store.clear_stop(job.id)
    missing = store.missing(job.id, spec.total)
    for index in sorted(sheet.blank_rows.intersection(missing)):
        store.save(job.id, Result(index=index, status=SKIPPED, error=BLANK_REASON))
    return [i for i in missing if i not in sheet.blank_rows], dropped


def drop_failed(store: Results, spec: JobSpec, sheet: Worksheet) -> int:
    """Forget the results of rows that ended failed, expired or cancelled, and of the later
    turns of their threads that were skipped because of them."""
    status = {r.index: r.status for r in all_results(store, spec.job_id, spec.total)}
    retry = {i for i, s in status.items() if s in RETRY_STATUSES}
    for rows in task_groups(sheet):
        after_failure = False
        for row in rows:
            if after_failure and status.get(row.index) == SKIPPED:
                retry.add(row.index)
            after_failure = after_failure or row.index in retry
    return store.drop(spec.job_id, (*RETRY_STATUSES, SKIPPED), sorted(retry))


def mode_of(settings: Settings) -> str:
    return DISTRIBUTED if settings.broker_url else EMBEDDED
