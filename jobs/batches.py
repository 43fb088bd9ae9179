"""A --batch job as a whole: keep its rows with it, run its looks (embedded) or hand them to
the workers (distributed), cancel it, describe its batches.

The looks themselves are worker/batch/looks.py; this module is what `run`, `resume`, `cancel`
and `status` call for a job asked through the Batch API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import openai

from worker import runtime
from worker.batch import looks, records, rounds
from worker.models import CANCELLED, JobSpec, Row
from worker.store import Batches, Progress, Store

NOTE_EVERY_S = 2.0  # a distributed job's progress line reads the workers' note this often
CANCEL_WAIT_S = 120.0  # `cancel` of a job no process runs waits this long for its batches


def prepare(store: Batches, spec: JobSpec, groups: Iterator[list[Row]]) -> None:
    """Keep the job's rows in its store (any worker builds a later round's lines from them)
    and its threads, in input order."""
    chunk: list[dict] = []
    threads: list[list[int]] = []
    for rows in groups:
        if len(rows) > 1:
            threads.append([r.index for r in rows])
        chunk += [r.to_json() for r in rows]
        if len(chunk) >= 1000:
            store.rows_put(spec.job_id, chunk)
            chunk = []
    if chunk:
        store.rows_put(spec.job_id, chunk)
    rounds.save_threads(store, spec.job_id, threads)


def ensure_prepared(store: Batches, spec: JobSpec, groups: Iterator[list[Row]]) -> None:
    """`prepare` again if the run that created the job stopped before it was done (the
    thread map is written last)."""
    if rounds.THREADS_KEY not in records.load(store, spec.job_id).extras:
        prepare(store, spec, groups)


def client(spec: JobSpec) -> openai.OpenAI:
    return runtime.client(spec.base_url)


def run_here(store: Store, spec: JobSpec, show: Callable[[Progress], None]) -> Progress:
    """Embedded: look at the job's batches until every row has a result or the job stopped,
    sleeping between looks (the look says how long)."""
    api = client(spec)
    while True:
        look = looks.look(store, spec, api)
        progress = store.progress(spec.job_id)
        progress.note = look.note
        show(progress)
        if look.delay is None:
            return progress
        time.sleep(look.delay)


def hand_to_workers(store: Batches, spec: JobSpec) -> None:
    """Distributed: start the job's chain of looks on the workers. A chain started earlier
    (by the run that was interrupted) ends at its next look: only the newest goes on."""
    from worker import tasks  # Celery: only a distributed job needs it

    chain = uuid.uuid4().hex
    _, state, _ = records.load(store, spec.job_id)
    state.chain = chain
    records.save_state(store, spec.job_id, state)
    tasks.batch_look.apply_async(args=(spec.job_id, chain))


def looked_at(store: Batches, spec: JobSpec) -> bool:
    """Whether a look has recorded a batch of the job yet."""
    return bool(records.load(store, spec.job_id).records)


def with_note(store: Batches, spec: JobSpec, show: Callable[[Progress], None]):
    """`show`, with the note the workers' last look left (read every NOTE_EVERY_S)."""
    seen = {"at": 0.0, "note": ""}

    def shown(progress: Progress) -> None:
        now = time.monotonic()
        if now - seen["at"] >= NOTE_EVERY_S:
            seen["at"] = now
            seen["note"] = records.load(store, spec.job_id).state.note
        progress.note = seen["note"]
        show(progress)

    return shown


def cancel(store: Store, spec: JobSpec, reason: str, running: bool, distributed: bool) -> str:
    """`askbatch cancel` of a --batch job: stop it, cancel its batches at the API; lines that
    finished are kept, the rest end `cancelled` once the batches have stopped (by the process
    or workers running the job, else here)."""
    store.stop(spec.job_id, CANCELLED, reason)
    asked = looks.cancel(store, spec, client(spec))
    head = f"job {spec.job_id}: cancelling {asked} batches at the API"
    if running or distributed:
        who = "the askbatch process running it" if running else "the workers"
        return f"{head}; {who} keep the lines they finished and mark the rest cancelled"
    deadline = time.monotonic() + CANCEL_WAIT_S
    look = looks.look(store, spec, client(spec))
    while look.delay is not None and time.monotonic() < deadline:
        time.sleep(min(look.delay, 2.0))
        look = looks.look(store, spec, client(spec))
    progress = store.progress(spec.job_id)
    if look.delay is not None:
        return (
            f"{head}; they have not stopped yet: `askbatch status {spec.job_id}` shows them, "
            f"`askbatch cancel {spec.job_id}` again writes the rest cancelled once they have"
        )
    kept = progress.done - progress.by_status.get(CANCELLED, 0)
    return (
        f"{head}; {kept} rows have a result, {progress.by_status.get(CANCELLED, 0)} are marked "
        "cancelled"
    )


def status_lines(store: Batches, spec: JobSpec) -> list[str]:
    """The job's batches, for `askbatch status`."""
    found, state, _ = records.load(store, spec.job_id)
    lines = [f"  batches: {len(found)}" + (f" ({state.note})" if state.note else "")]
    lines += [f"    {text}" for text in records.summary(found)]
    return lines
