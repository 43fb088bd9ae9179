"""The Celery app. JSON only; late acks so a task lost with its worker is delivered again."""

from __future__ import annotations

from celery import Celery

from worker.settings import Settings

app = Celery("askbatch", include=["worker.tasks"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,  # results go to our store, keyed by job and row
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=2,
    broker_connection_retry_on_startup=True,
    task_default_queue="askbatch",
)


def configure(settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        # Redis hands an unacknowledged task to another worker after this long.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    )
    return app
