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
    # Only matters for a prefork child that dies; on the thread pool a killed worker dies
    # whole and its tasks come back through the visibility timeout (configure below).
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=2,
    broker_connection_retry_on_startup=True,
    task_default_queue="askbatch",
)


def configure(settings: Settings) -> Celery:
    vt = settings.visibility_timeout_s
    app.conf.update(
        broker_url=settings.broker_url or "memory://",
        broker_transport_options={
            # Redis hands a task that was never acknowledged (its worker died) to another
            # worker this long after it was first handed out. A task still running then is
            # delivered twice; the row claims (worker/limits/leases) keep its rows from being
            # re-asked.
            "visibility_timeout": vt,
            # kombu looks for such tasks every interval x throttle seconds (10 x 10 by
            # default); look every few seconds instead, so redelivery follows the timeout.
            "unacked_restore_interval": max(1.0, min(10.0, vt / 4)),
            "unacked_restore_throttle": 1,
            # A worker killed while restoring leaves its mutex behind for this long.
            "unacked_mutex_expire": max(10, min(300, vt)),
        },
        # Publishing (run, and a task's own retry) rides out a short broker restart.
        task_publish_retry_policy={
            "max_retries": 30,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
    )
    return app
