"""Answering rows: the plain functions a task calls. No Celery, no CSV here."""

from __future__ import annotations

import logging
import time

from worker.models import EXPIRED, FAILED, JobSpec, Result, Row
from worker.providers.base import Provider, Thread, Turn
from worker.retry import Retrier, RowTimeout, short_error
from worker.store import Store

log = logging.getLogger(__name__)


class RowBusy(Exception):
    """Raised when another delivery of the same task is answering a row right now."""

    def __init__(self, index: int, wait_s: float) -> None:
        super().__init__(f"row {index} is being answered elsewhere")
        self.wait_s = wait_s


def claim_ttl(spec: JobSpec) -> float:
    # Long enough for the row's own deadline plus the cancel call that may follow it.
    return spec.timeout_s + 60


def answer_rows(store: Store, spec: JobSpec, provider: Provider, rows: list[Row]) -> int:
    """Answer rows of one thread in order; returns how many were answered now.

    Rows that already have a stored result are passed over, so a redelivered task never asks
    an answered question again.
    """
    store.mark_started(spec.job_id)
    thread: Thread | None = None
    answered = 0
    for row in rows:
        if store.has_result(spec.job_id, row.index):
            continue
        if stop := store.stopped(spec.job_id):
            # The job was cancelled or hit its spending cap: rows not started are not sent.
            status, reason = stop
            store.save(spec.job_id, Result(index=row.index, status=status, error=reason))
            continue
        if not store.claim(spec.job_id, row.index, claim_ttl(spec)):
            raise RowBusy(row.index, claim_ttl(spec))
        try:
            result, thread = answer_row(spec, provider, thread, row)
            store.save(spec.job_id, result)
            answered += 1
        finally:
            store.release(spec.job_id, row.index)
    return answered


def answer_row(
    spec: JobSpec, provider: Provider, thread: Thread | None, row: Row
) -> tuple[Result, Thread | None]:
    """Run one question; every failure becomes the row's result, never an exception."""
    started = time.monotonic()
    retrier = Retrier(
        spec.max_attempts,
        deadline=started + spec.timeout_s,
        request_timeout=spec.request_timeout_s,
        base=spec.backoff_s,
        cap=spec.backoff_cap_s,
    )
    try:
        if thread is None:
            thread = provider.open_thread(retrier)
        turn = provider.ask(thread, row, retrier)
    except RowTimeout:
        turn = Turn(EXPIRED, error=f"no answer within the row timeout of {spec.timeout_s:g}s")
    except Exception as exc:  # one failing row never stops the job
        if not _expected(exc):
            log.exception("row %s (id %s) failed unexpectedly", row.index + 1, row.id)
        turn = Turn(status=FAILED, error=short_error(exc))
    result = Result(
        index=row.index,
        status=turn.status,
        answer=turn.answer,
        error=turn.error,
        usage=turn.usage,
        model=turn.model,
        thread_id=thread.id if thread else "",
        run_id=turn.run_id,
        latency_s=time.monotonic() - started,
        attempts=1 + retrier.retries,
    )
    return result, thread


def _expected(exc: Exception) -> bool:
    import httpx2
    import openai

    return isinstance(exc, openai.OpenAIError | httpx2.TransportError)
