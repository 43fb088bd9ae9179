"""Celery tasks: thin wrappers that unpack the payload and call worker.runner."""

from __future__ import annotations

from typing import Any

from worker import runtime
from worker.app import app
from worker.models import Row
from worker.runner import RowBusy, answer_rows


@app.task(bind=True, name="askbatch.answer", max_retries=None)
def answer(self: Any, job_id: str, rows: list[dict[str, Any]]) -> int:
    """Answer the rows of one thread (one row, or an ordered group) of job `job_id`."""
    store = runtime.store()
    spec = store.job(job_id)
    try:
        provider = runtime.provider_for(spec)
        return answer_rows(store, spec, provider, [Row.from_json(r) for r in rows])
    except RowBusy as busy:
        # Another delivery holds the row; look again once its claim must have lapsed.
        raise self.retry(countdown=busy.wait_s) from None
