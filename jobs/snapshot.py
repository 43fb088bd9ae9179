"""A job's live facts in one place, read from its store: what the progress bar, `askbatch
status --watch` and the web page show.

`snapshot(store, job_id, sampler)` reads the store once (the saved rows' counts, tokens, cost
and retries, the job's stop, and its processes' pace reports) and hands back a `Snapshot`.
The rate of rows and the time left need a history of how many rows were done when: a
`Sampler` keeps it, one per viewer, fed by every snapshot taken with it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from jobs import pace
from worker.batch import records
from worker.fatal import is_halt
from worker.models import COMPLETED, EXPIRED, FAILED, INCOMPLETE, JobSpec, Stop, money
from worker.pricing import dollars
from worker.store import Batches, JobControl, LocalStore, Progress, Store

WINDOW_S = 30.0  # rows per second are measured over about this much recent time

# What a job is doing, as the snapshot's `state` says it.
RUNNING = "running"
WAITING = "waiting"  # no process has reported on the job lately: none picked it up (yet)
STOPPING = "stopping"  # cancelled or at the spending cap: rows in flight still finishing
FINISHED = "finished"
HALTED = "halted"  # an error no retry mends stopped it (worker/fatal); resume once fixed
NOT_RUNNING = "not running"  # an embedded job no process holds: `askbatch resume` goes on
OVER = (FINISHED, HALTED, NOT_RUNNING)

# Rows that were asked and did not give a whole answer.
FAILURES = (FAILED, INCOMPLETE, EXPIRED)


class Sampler:
    """Rows done over the last `window_s` seconds: the recent rate and the time left.

    The rate is measured from the samples, so a job resumed (or watched) half-way is not
    credited with rows done before its viewer came.
    """

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()
        self.t0 = clock()

    def add(self, done: int) -> None:
        now = self.clock()
        if self.samples and done < self.samples[-1][1]:
            self.samples.clear()  # results dropped (--retry-failed): start measuring again
        self.samples.append((now, done))
        # Keep one sample older than the window, so the window is always covered.
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()

    def rows_per_s(self) -> float | None:
        """None until two samples a moment apart."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if t1 - t0 < 0.5:
            return None
        return (d1 - d0) / (t1 - t0)

    def elapsed_s(self) -> float:
        return self.clock() - self.t0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A job's progress at one moment. Money is exact: `cost_nusd` in whole nano-dollars
    (each row rounded up, as the spending ledger counts)."""

    job_id: str
    total: int
    done: int
    by_status: dict[str, int]
    state: str
    stop_reason: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_nusd: int
    unpriced: int  # rows with tokens whose model has no price: not in the cost
    retries: int  # HTTP attempts beyond each row's first
    in_flight: int
    rows_per_s: float | None  # over the last WINDOW_S seconds; None until measured
    eta_s: float | None  # time left at that rate; None while unknown (or nothing moves)
    elapsed_s: float  # since the sampler's first look
    # From the processes' pace reports (worker/limits/rate/flight.py): "" / 0 when none.
    limit: str  # "1,200 RPM, 200,000 TPM (learned)"
    requests_per_min: float
    pace: str  # the whole pace phrase the plain line and status print
    provider: str = ""
    model: str = ""
    tier: str = ""  # the service tier asked for, "batch" for the Batch API, or ""
    batches: str = ""  # a --batch job: what it waits on ("2 batches out, 40 rows waiting")

    @property
    def completed(self) -> int:
        return self.by_status.get(COMPLETED, 0)

    @property
    def not_completed(self) -> int:
        return self.done - self.completed

    @property
    def failures(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FAILURES)

    @property
    def cost_usd(self) -> Decimal:
        return dollars(self.cost_nusd)

    @property
    def over(self) -> bool:
        return self.state in OVER

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the web page: money as an exact decimal string."""
        data = asdict(self)
        data.update(
            cost_usd=money(self.cost_usd),
            completed=self.completed,
            not_completed=self.not_completed,
            failures=self.failures,
            over=self.over,
        )
        return data


_FROM_PROGRESS = (
    "total",
    "done",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_nusd",
    "unpriced",
    "retries",
)


def snapshot(
    store: Store,
    job_id: str,
    sampler: Sampler | None = None,
    progress: Progress | None = None,
    spec: JobSpec | None = None,
) -> Snapshot:
    """The job's facts now; `sampler` (kept between calls) gives the rate and time left.
    `progress` and `spec`, when the caller has just read them, save reading them again.

    Raises KeyError for a job the store does not hold.
    """
    spec = spec or store.spec(job_id)
    p = progress or store.progress(job_id)
    reports = pace.reports(store, job_id)
    in_flight = sum(r.get("active", 0) for r in reports) if reports else store.in_flight(job_id)
    rate = eta = None
    elapsed = 0.0
    if sampler is not None:
        sampler.add(p.done)
        rate, elapsed = sampler.rows_per_s(), sampler.elapsed_s()
        if rate:
            eta = max(0, p.total - p.done) / rate
    stop = store.stopped(job_id)
    return Snapshot(
        job_id=job_id,
        **{name: getattr(p, name) for name in _FROM_PROGRESS},
        by_status={s: n for s, n in p.by_status.items() if n},
        state=_state(store, spec, p.done, p.total, stop, in_flight, bool(reports)),
        stop_reason=stop.reason if stop else "",
        in_flight=in_flight,
        rows_per_s=rate,
        eta_s=0.0 if p.done >= p.total else eta,
        elapsed_s=elapsed,
        limit=pace.limit_text(reports),
        requests_per_min=sum(r.get("rate", 0.0) for r in reports) * 60,
        pace=pace.line(reports),
        provider=spec.provider,
        model=spec.model,
        tier=tier_of(spec),
        batches=_batches(store, spec, p),
    )


def tier_of(spec: JobSpec) -> str:
    """The tier the job asks for: "flex", "priority", ..., "batch" for the Batch API, or "".

    Read by name: JobSpec gains `service_tier` and `batch` with the tier work (issue 13)."""
    if getattr(spec, "batch", False):
        return "batch"
    return str(getattr(spec, "service_tier", "") or "")


def _state(
    store: JobControl,
    spec: JobSpec,
    done: int,
    total: int,
    stop: Stop | None,
    in_flight: int,
    reporting: bool,
) -> str:
    if done >= total:
        return FINISHED
    if is_halt(stop):
        return HALTED if in_flight == 0 else STOPPING
    if isinstance(store, LocalStore) and not store.busy(spec.job_id):
        return NOT_RUNNING
    if stop:
        return STOPPING
    return RUNNING if reporting or in_flight else WAITING


def _batches(store: Batches, spec: JobSpec, progress: Progress) -> str:
    """The note a --batch job's last look left: the one the run process just had, else the
    one kept with the job (a job the workers or another process look at)."""
    if not spec.batch:
        return ""
    return progress.note or records.load(store, spec.job_id).state.note
