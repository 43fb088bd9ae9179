"""The store's interface: a protocol per role (`Store`: all of them), and what it hands back.

Per-row results are stored the moment they are known, keyed by job and row. Saving is
first-writer-wins: a row that already has a final result is never overwritten, which is what
makes a redelivered task harmless. The backends: `redis.py` for distributed jobs (shared by
every worker), `sqlite.py` for embedded ones (a SQLite file per job, so a job stopped by Ctrl-C
or kill -9 keeps its rows).

The roles: `Jobs`, `Results`, `Tallies`, `Claims`, `JobControl`, `Ledger`, `Pacing`,
`Batches`. A caller takes the narrowest one it uses, so that its signature says what it
touches; each backend keeps them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from worker import pricing
from worker.limits.rate.budget import Bucket, Buckets
from worker.models import JobSpec, Result, Stop

JOB_TTL_S = 30 * 24 * 3600  # results outlive the job long enough to collect them later


@dataclass(slots=True)
class Progress:
    """What the job's saved rows add up to: each row counted once (first writer wins), and
    taken back when its result is dropped."""

    total: int = 0
    done: int = 0
    started: int = 0
    # What a --batch job is waiting on ("2 batches out, 1,200 lines waiting"), for the
    # progress line; "" otherwise.
    note: str = ""
    by_status: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Cost of the saved rows in whole nano-dollars, each row rounded up as the spending
    # ledger counts it (worker.pricing.nano); rows with tokens but no price count in `unpriced`.
    cost_nusd: int = 0
    unpriced: int = 0
    # HTTP attempts beyond each row's first (429s, 5xx, network errors).
    retries: int = 0

    @property
    def not_completed(self) -> int:
        return self.done - self.by_status.get("completed", 0)


@dataclass(frozen=True, slots=True)
class RowTally:
    """One result's share of `Progress` beyond its status and tokens."""

    cost_nusd: int
    unpriced: int
    retries: int

    @classmethod
    def of(cls, result: Result) -> RowTally:
        cost = result.cost_usd
        return cls(
            cost_nusd=0 if cost is None else pricing.nano(cost),
            unpriced=int(cost is None and result.usage.total_tokens > 0),
            retries=max(0, result.attempts - 1),
        )


class Spending(NamedTuple):
    """The spending ledger of a job, in whole nano-dollars: what its rows cost, and what the
    rows in flight hold against the cap."""

    spent: int
    held: int


@dataclass(slots=True)
class RowStart:
    """What a worker finds when it comes to a row, read and acted on in one step: the row's
    stored result, else the job's stop, else the claim it took (or could not take)."""

    done: Result | None = None
    stop: Stop | None = None
    claimed: bool = False


# --- the roles: each caller takes the narrowest it uses; each backend keeps them all -----


class Jobs(Protocol):
    """The jobs a store holds: each one's spec, and the record the jobs layer keeps with it
    (jobs/record.py, opaque here) to collect or resume it later."""

    def create_job(self, spec: JobSpec) -> None: ...
    def spec(self, job_id: str) -> JobSpec: ...
    def set_record(self, job_id: str, record: dict, input_key: str) -> None: ...
    def record(self, job_id: str) -> dict: ...
    def latest_job(self, input_key: str) -> str | None: ...
    # Every job it holds, by id (ids begin with their local start time: newest sort last).
    def job_ids(self) -> list[str]: ...


class Results(Protocol):
    """Each row's result, stored the moment it is known; the first writer wins."""

    def save(self, job_id: str, result: Result) -> bool: ...
    # Many at once (a batch's output file, read in chunks): one commit or round trip.
    def save_many(self, job_id: str, results: list[Result]) -> list[bool]: ...
    def get(self, job_id: str, indices: Iterable[int]) -> dict[int, Result]: ...
    # Coming back to a job (jobs.control): which rows lack a result, dropping results to ask
    # them again, and giving the rows nobody is answering the job's stop as their result.
    def missing(self, job_id: str, total: int) -> list[int]: ...
    def drop(self, job_id: str, statuses: Iterable[str], indices: Iterable[int]) -> int: ...
    def mark_unstarted(
        self, job_id: str, indices: Iterable[int], status: str, reason: str
    ) -> int: ...


class Tallies(Protocol):
    """What the job's saved rows add up to, kept as they are saved: a poll reads a few sums."""

    def progress(self, job_id: str) -> Progress: ...


class Claims(Protocol):
    """A worker's claim on the row it is asking, held as a lease: it lapses `lease_s` after
    its holder dies, so that a redelivered task can take the row over."""

    lease_s: float

    # The two calls a worker makes per row (one round trip each): look at the row and claim
    # it (`first`: the first row of a task, which also counts the task as started), then
    # save its result and let go of the claim.
    def begin(self, job_id: str, index: int, ttl_s: float, first: bool) -> RowStart: ...
    def finish(self, job_id: str, result: Result) -> bool: ...
    def release(self, job_id: str, index: int) -> None: ...
    # Rows being answered right now (live claims): a halted job is over once none is left.
    def in_flight(self, job_id: str) -> int: ...


class JobControl(Protocol):
    """The job's stop (cancel, the spending cap, a halt: worker/fatal), and which process
    runs an embedded job (`hold` it; `busy` while another does)."""

    def stop(self, job_id: str, status: str, reason: str) -> None: ...
    def stopped(self, job_id: str) -> Stop | None: ...
    def clear_stop(self, job_id: str) -> None: ...
    def hold(self, job_id: str) -> contextlib.AbstractContextManager: ...
    def busy(self, job_id: str) -> bool: ...


class Ledger(Protocol):
    """The spending ledger, in whole nano-dollars (worker.limits.spending): hold, then settle.
    Holds are kept per row: a row asked again after its worker died replaces the dead
    worker's hold instead of adding to it."""

    def reserve(self, job_id: str, index: int, amount: int, cap: int) -> bool: ...
    def settle(self, job_id: str, index: int, spent: int) -> None: ...
    def spending(self, job_id: str) -> Spending: ...


class Pacing(Buckets, Protocol):
    """How the job's processes pace it (worker/limits/rate): the state of its rate budget for
    each model, and how each process runs it (flight.py): a process writes its own report
    (`report`, keyed by `proc`; None: only read) and reads every report written in the last
    `within_s` seconds."""

    def bucket(self, job_id: str, model: str) -> Bucket: ...
    def pace(self, job_id: str, proc: str, report: dict | None, within_s: float) -> list[dict]: ...


class Batches(Protocol):
    """The Batch API route (worker/batch): the job's rows, kept so that any worker can build
    a later round's lines; its batch records by key (worker/batch/records.py); and a lease
    that keeps two looks at the job's batches from overlapping."""

    def rows_put(self, job_id: str, rows: list[dict]) -> None: ...
    def rows_get(self, job_id: str, indices: Iterable[int]) -> dict[int, dict]: ...
    def batch_put(self, job_id: str, key: str, record: dict) -> None: ...
    def batch_records(self, job_id: str) -> dict[str, dict]: ...
    def look_lease(self, job_id: str, token: str, ttl_s: float) -> bool: ...
    def look_release(self, job_id: str, token: str) -> None: ...


class Store(Jobs, Results, Tallies, Claims, JobControl, Ledger, Pacing, Batches, Protocol):
    """Every role: what each backend keeps, and what a caller that uses most of them takes."""


def chunks(items: list, size: int = 500) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
