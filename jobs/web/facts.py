"""What the page shows of a job, as JSON: progress, rows by status, tokens, cost so far and by
model, rows per second and time left, its settings (any password masked), the first failures.

Results are final once stored (first writer wins), so each job's tally is kept between polls
and only the rows that got a result since are read: a 50,000-row job is not re-read every
second. A tally whose job lost results (`--retry-failed` drops them) is started over.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from jobs import control
from jobs.record import EMBEDDED
from worker.fatal import is_halt
from worker.models import CANCELLED, COMPLETED, EXPIRED, FAILED, INCOMPLETE, SKIPPED
from worker.settings import OPENAI_URL, mask_url
from worker.store import Progress

FAILURE_STATUSES = (FAILED, EXPIRED, INCOMPLETE, SKIPPED)
FIRST_FAILURES = 20
RATE_WINDOW_S = 60.0  # rows per second over the last minute seen
CHUNK = 2000


@dataclass
class Tally:
    """Cost and failures of the rows read so far, and the job's progress as it was sampled."""

    seen: set[int] = field(default_factory=set)
    cost: Decimal = Decimal(0)
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    unpriced: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    samples: deque = field(default_factory=lambda: deque(maxlen=600))

    def add(self, result) -> None:
        self.seen.add(result.index)
        if result.model or result.usage.total_tokens:  # a row the API answered
            entry = self.by_model.setdefault(
                result.model or "(unknown)", {"rows": 0, "cost": Decimal(0), "unpriced": 0}
            )
            entry["rows"] += 1
            if result.cost_usd is not None:
                self.cost += result.cost_usd
                entry["cost"] += result.cost_usd
            elif result.usage.total_tokens:
                self.unpriced += 1
                entry["unpriced"] += 1
        if result.status in FAILURE_STATUSES and result.error != control.BLANK_REASON:
            self.failed += 1
            self.failures.append(
                {"row": result.index + 1, "status": result.status, "error": result.error}
            )
            self.failures.sort(key=lambda f: f["row"])
            del self.failures[FIRST_FAILURES:]

    def rate(self, now: float, done: int) -> float | None:
        """Rows per second over the last minute, from the samples of `done` taken so far."""
        self.samples.append((now, done))
        while self.samples and now - self.samples[0][0] > RATE_WINDOW_S:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        if now - t0 < 2.0 or done < d0:
            return None
        return (done - d0) / (now - t0)


class Tallies:
    """One tally per job, shared by the server's request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tallies: dict[str, Tally] = {}
        self.job_locks: dict[str, threading.Lock] = {}

    def forget(self, job_id: str) -> None:
        with self.lock:
            self.tallies.pop(job_id, None)

    def update(self, job: control.Job, progress: Progress) -> Tally:
        with self.lock:
            tally = self.tallies.setdefault(job.id, Tally())
            lock = self.job_locks.setdefault(job.id, threading.Lock())
        with lock:
            if progress.done < len(tally.seen):  # results were dropped: count again
                tally = Tally(samples=tally.samples)
                with self.lock:
                    self.tallies[job.id] = tally
            if len(tally.seen) < progress.done:
                new = [i for i in range(job.spec.total) if i not in tally.seen]
                for start in range(0, len(new), CHUNK):
                    for result in job.store.get(job.id, new[start : start + CHUNK]).values():
                        tally.add(result)
        return tally


def settings_of(job: control.Job) -> dict[str, Any]:
    """The job's own settings as the page shows them: nothing secret, passwords masked."""
    spec = job.spec
    shown: dict[str, Any] = {
        "provider": spec.provider,
        "model": spec.model,
        "base_url": mask_url(spec.base_url or OPENAI_URL),
        "instructions": spec.instructions,
        "max_cost": spec.max_cost,
        "rpm": spec.rpm,
        "tpm": spec.tpm,
    }
    if name := spec.profile.get("name"):
        shown["profile"] = name
    # The Batch API route and the service tier, where the job spec has them.
    for extra in ("service_tier", "batch"):
        if (value := getattr(spec, extra, None)) not in (None, "", False):
            shown[extra] = value
    return shown


def state_of(job: control.Job, progress: Progress, running_here: bool) -> str:
    """One word for the page: running, finished, cancelled, halted, stopping, waiting, stopped."""
    stop = job.store.stopped(job.id)
    left = job.spec.total - progress.done
    if left <= 0:
        cancelled = stop and stop[0] == CANCELLED and progress.by_status.get(CANCELLED)
        return "cancelled" if cancelled else "finished"
    if stop:
        return "halted" if is_halt(stop) else "stopping"
    if running_here or job.store.busy(job.id):
        return "running"
    if job.record.mode == EMBEDDED:
        return "stopped"
    return "running" if progress.started else "waiting"


def describe(
    job: control.Job, tallies: Tallies, running_here: bool, detail: bool = False
) -> dict[str, Any]:
    """The job's facts for the page and the JSON API."""
    progress = job.store.progress(job.id)
    tally = tallies.update(job, progress)
    total = job.spec.total
    state = state_of(job, progress, running_here)
    rate = tally.rate(time.monotonic(), progress.done)
    left = total - progress.done
    facts: dict[str, Any] = {
        "id": job.id,
        "mode": job.record.mode,
        "where": job.where,
        "created": job.record.created,
        "worksheet": Path(job.record.input).name,
        "state": state,
        "total": total,
        "done": progress.done,
        "percent": round(100 * progress.done / total, 1) if total else 100.0,
        "completed": progress.by_status.get(COMPLETED, 0),
        "by_status": {s: n for s, n in sorted(progress.by_status.items()) if n},
        "tokens": {
            "prompt": progress.prompt_tokens,
            "completion": progress.completion_tokens,
            "total": progress.total_tokens,
        },
        "cost_usd": f"{tally.cost:.6f}",
        "unpriced_rows": tally.unpriced,
        "cost_by_model": {
            model: {
                "rows": e["rows"],
                "cost_usd": f"{e['cost']:.6f}",
                "unpriced_rows": e["unpriced"],
            }
            for model, e in sorted(tally.by_model.items())
        },
        "rows_per_s": None if rate is None else round(rate, 2),
        "eta_s": (
            round(left / rate)
            if rate and left > 0 and state == "running"
            else (0 if left <= 0 else None)
        ),
        "settings": settings_of(job),
    }
    if detail:
        stop = job.store.stopped(job.id)
        facts["stop"] = stop[1] if stop else ""
        facts["failed_rows"] = tally.failed
        facts["failures"] = list(tally.failures)
        facts["status_line"] = control.state_line(job, progress)
    return facts
