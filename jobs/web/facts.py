"""What the page shows of a job, as JSON: progress, rows by status, tokens, cost so far and by
model, rows per second and time left, its settings (any password masked), the first failures.

Results are final once stored (first writer wins), so each job's tally is kept between polls
and only the rows that got a result since are read: a 50,000-row job is not re-read every
second. A tally whose job lost results (`--retry-failed` drops them) is started over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from jobs import control, grade
from jobs.record import check_worksheet
from jobs.snapshot import Sampler, snapshot, tier_of
from worker.errors import AskbatchError
from worker.models import EXPIRED, FAILED, INCOMPLETE, SKIPPED, money
from worker.settings import OPENAI_URL, mask_url
from worker.store import Progress

FAILURE_STATUSES = (FAILED, EXPIRED, INCOMPLETE, SKIPPED)
FIRST_FAILURES = 20
CHUNK = 2000


@dataclass
class Tally:
    """Cost by model and the first failures of the rows read so far; the job's rate."""

    seen: set[int] = field(default_factory=set)
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    sampler: Sampler = field(default_factory=Sampler)  # rows done over time: rate, time left
    # The score (jobs/grade.py), worked out again only when rows or verdicts were added.
    score: dict[str, Any] | None = None
    score_at: tuple[int, int] = (-1, -1)

    def add(self, result) -> None:
        self.seen.add(result.index)
        if result.model or result.usage.total_tokens:  # a row the API answered
            entry = self.by_model.setdefault(
                result.model or "(unknown)", {"rows": 0, "cost": Decimal(0), "unpriced": 0}
            )
            entry["rows"] += 1
            if result.cost_usd is not None:
                entry["cost"] += result.cost_usd
            elif result.usage.total_tokens:
                entry["unpriced"] += 1
        if result.status in FAILURE_STATUSES and result.error != control.BLANK_REASON:
            self.failures.append(
                {"row": result.index + 1, "status": result.status, "error": mask_url(result.error)}
            )
            self.failures.sort(key=lambda f: f["row"])
            del self.failures[FIRST_FAILURES:]


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
                tally = Tally(sampler=tally.sampler)
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
    if tier := tier_of(spec) or getattr(spec, "service_tier", ""):
        shown["service_tier"] = tier
    if name := spec.profile.get("name"):
        shown["profile"] = name
    # The Batch API route, where the job spec has it.
    for extra in ("batch",):
        if (value := getattr(spec, extra, None)) not in (None, "", False):
            shown[extra] = value
    return shown


def _graded(job: control.Job, tally: Tally, progress: Progress) -> dict[str, Any] | None:
    """The job's score and first wrong rows, for a job with an answer key."""
    if not job.spec.grade:
        return None
    try:
        judged = job.store.progress(grade.judge_id(job.id)).done
    except KeyError:
        judged = 0
    if tally.score_at != (progress.done, judged):
        try:
            found = grade.score(job.store, job.spec, check_worksheet(job.record, job.id))
        except AskbatchError:
            return None  # the worksheet is gone or changed: the page says so elsewhere
        if found is None:
            return None
        wrong = [
            dict(zip(("row", "question", "key", "answer"), w, strict=True)) for w in found.wrong
        ]
        tally.score = {
            "line": found.line(),
            "right": found.right,
            "graded": found.graded,
            "wrong": wrong,
        }
        tally.score_at = (progress.done, judged)
    return tally.score


def describe(job: control.Job, tallies: Tallies, detail: bool = False) -> dict[str, Any]:
    """The job's facts for the page and the JSON API: the live ones from `jobs.snapshot` (as
    the progress bar shows them), with the cost by model and the first failures."""
    progress = job.store.progress(job.id)
    tally = tallies.update(job, progress)
    snap = snapshot(job.store, job.id, tally.sampler, progress, job.spec)
    total = job.spec.total
    facts: dict[str, Any] = {
        "id": job.id,
        "mode": job.record.mode,
        "where": job.where,
        "created": job.record.created,
        "worksheet": Path(job.record.input).name,
        "state": snap.state,
        "total": total,
        "done": snap.done,
        "percent": round(100 * snap.done / total, 1) if total else 100.0,
        "completed": snap.completed,
        "failed": snap.failures,
        "by_status": dict(sorted(snap.by_status.items())),
        "tokens": {
            "prompt": snap.prompt_tokens,
            "completion": snap.completion_tokens,
            "total": snap.total_tokens,
        },
        "cost_usd": money(snap.cost_usd),
        "unpriced_rows": snap.unpriced,
        "cost_by_model": {
            model: {
                "rows": e["rows"],
                "cost_usd": money(e["cost"]),
                "unpriced_rows": e["unpriced"],
            }
            for model, e in sorted(tally.by_model.items())
        },
        "retries": snap.retries,
        "in_flight": snap.in_flight,
        "rows_per_s": None if snap.rows_per_s is None else round(snap.rows_per_s, 2),
        "eta_s": None if snap.eta_s is None else round(snap.eta_s),
        "limit": snap.limit,
        "pace": snap.pace,
        "stop": snap.stop_reason and mask_url(snap.stop_reason),
        "settings": settings_of(job),
    }
    if detail:
        facts["grade"] = _graded(job, tally, progress)
        facts["failures"] = list(tally.failures)
        facts["status_line"] = control.state_line(job, progress)
    return facts
