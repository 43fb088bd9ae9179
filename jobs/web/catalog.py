"""The jobs `askbatch serve` can see: every job of this machine's state directory and of the
configured Redis, found by id, newest first, through the same `control.locate` the CLI uses.

The server process holds one store per place: the one its own jobs run on (`runtime.store()`:
the state directory embedded, Redis distributed) and, in distributed mode, the state
directory too, read-only but for cancel. A job's spec and record never change, so a located
job is kept.
"""

from __future__ import annotations

import re
import threading

import redis

from jobs import control
from jobs.errors import UnknownJob
from worker.errors import ConfigError
from worker.settings import Settings, mask_url
from worker.store import LocalStore, Store

_JOB_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]+")


class Catalog:
    def __init__(self, settings: Settings, own: Store) -> None:
        self.settings = settings
        self.own = own  # where this server's own jobs run
        self.local = own if isinstance(own, LocalStore) else LocalStore(settings.state_dir)
        self.remote = own if settings.broker_url else None
        self.lock = threading.Lock()
        self.jobs: dict[str, control.Job] = {}

    def store_for(self, settings: Settings) -> Store:
        """The store of a job's settings (control.locate's `use`): never reconfigures the
        process, whose runtime keeps running the jobs started here."""
        if settings.broker_url:
            assert self.remote is not None
            return self.remote
        return self.local

    def runs_here(self, job: control.Job) -> bool:
        """Whether this server can run the job's rows: it answers on the job's own store."""
        return job.store is self.own

    def locate(self, job_id: str) -> control.Job:
        with self.lock:
            if job := self.jobs.get(job_id):
                return job
        try:
            job = control.locate(self.settings, job_id, use=self.store_for)
        except ConfigError as exc:
            raise UnknownJob(str(exc)) from None
        with self.lock:
            if len(self.jobs) > 1000:
                self.jobs.clear()
            return self.jobs.setdefault(job_id, job)

    def job_ids(self) -> tuple[list[str], list[str]]:
        """(every job id, newest first; problems reaching a store, one line each)."""
        ids = set(self.local.job_ids())
        problems = []
        if self.remote is not None:
            try:
                ids.update(self.remote.job_ids())
            except redis.RedisError as exc:
                where = mask_url(self.settings.broker_url)
                problems.append(f"cannot reach Redis at {where}: {exc}")
        return sorted((i for i in ids if _JOB_ID.fullmatch(i)), reverse=True), problems
