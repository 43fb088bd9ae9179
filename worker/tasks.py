"""Celery tasks: thin wrappers that unpack the payload and call worker.runner or worker.batch."""

from __future__ import annotations

import logging
from typing import Any

import redis

from worker import runtime
from worker.app import app
from worker.errors import LookBusy, LookStopped, RowBusy
from worker.models import Row

log = logging.getLogger(__name__)


@app.task(bind=True, name="askbatch.answer", max_retries=None)
def answer(self: Any, job_id: str, rows: list[dict[str, Any]]) -> int:
    """Answer the rows of one thread (one row, or an ordered group) of job `job_id`."""
    try:
        return runtime.answer(job_id, [Row.from_json(r) for r in rows])
    except RowBusy as busy:
        # Another delivery holds the row; look again when its claim would have lapsed.
        raise self.retry(countdown=busy.wait_s) from None
    except redis.RedisError as exc:
        # The store stayed unreachable past its own retries. A failed task would be
        # acknowledged and its rows lost; a retry keeps a copy of it in the queue.
        raise self.retry(countdown=5, exc=exc) from None


@app.task(bind=True, name="askbatch.batch_look", max_retries=None)
def batch_look(self: Any, job_id: str, chain: str) -> float | None:
    """One look at a --batch job's batches (worker/batch/looks.py); sends the next look of
    its chain with a countdown, so that polling needs no process of its own."""

    def schedule(delay: float, following: str) -> None:
        batch_look.apply_async(args=(job_id, following), countdown=delay)

    try:
        return runtime.batch_look(job_id, chain, schedule)
    except LookBusy:
        raise self.retry(countdown=5) from None
    except redis.RedisError as exc:
        raise self.retry(countdown=5, exc=exc) from None
    except LookStopped as stopped:  # one message; the batch it met is read by then
        log.error("%s; looking again in 30s", stopped)
        raise self.retry(countdown=30) from None
    except Exception as exc:
        # A failed task would end the job's chain of looks: look again in a while instead.
        log.exception("job %s: a look at its batches failed; looking again in 30s", job_id)
        raise self.retry(countdown=30, exc=exc) from None
