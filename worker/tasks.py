"""Celery tasks: thin wrappers that unpack the payload and call worker.runner."""

from __future__ import annotations

from typing import Any

import redis

from worker import runtime
from worker.app import app
from worker.models import Row
from worker.runner import RowBusy


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
