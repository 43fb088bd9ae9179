"""The job's batches as the store keeps them: one record per uploaded file.

A record is written the moment its file is uploaded, before the batch is created, and again
when the batch id comes back: a process killed between the two finds its batch again through
the `metadata` it was created with (api.find_batch), so a line is neither lost nor asked twice.
Records are never deleted; `ended` says the batch's results have been read into the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

from worker.fatal import one_line
from worker.store import Batches

# The Batch API's statuses, and the ones after which nothing more happens to a batch.
TERMINAL = ("completed", "failed", "expired", "cancelled")
UPLOADED = "uploaded"  # askbatch's own: the file is uploaded, the batch not yet created
STATE_KEY = "~state"  # the job-wide record beside the batches (see JobState)


class Lines:
    """The (row, attempt) of a batch's lines, kept as runs of consecutive rows asked at the
    same attempt, `[start, stop, attempt]`: a 50,000-line batch is one run in the store, not
    50,000 pairs that every look would parse."""

    __slots__ = ("spans",)

    def __init__(self, spans: list[list[int]]) -> None:
        self.spans = spans

    @classmethod
    def of(cls, pairs: Iterable[Sequence[int]]) -> Lines:
        spans: list[list[int]] = []
        for index, attempt in pairs:
            last = spans[-1] if spans else None
            if last is not None and last[1] == index and last[2] == attempt:
                last[1] += 1
            else:
                spans.append([index, index + 1, attempt])
        return cls(spans)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for start, stop, attempt in self.spans:
            for index in range(start, stop):
                yield index, attempt

    def __len__(self) -> int:
        return sum(stop - start for start, stop, _ in self.spans)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lines) and self.spans == other.spans


@dataclass
class BatchRecord:
    key: str  # the input file's id: one batch per file
    seq: int  # 1, 2, ... in order of upload; the spending cap's hold is kept under -seq
    model: str
    rows: Lines  # (row index, attempt) of every line; a list of pairs is taken too
    uploaded_at: float = field(default_factory=time.time)
    batch_id: str = ""
    status: str = UPLOADED
    submitted_at: float = 0.0
    completed: int = 0
    failed: int = 0
    output_file_id: str = ""
    error_file_id: str = ""
    hold_nusd: int = 0
    ended: bool = False
    # Why the batch failed as a whole (validation), from its `errors`; "" otherwise.
    error: str = ""
    # The batch failed only because of the enqueued-token limit: its lines were not asked.
    token_limited: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rows, Lines):
            self.rows = Lines.of(self.rows)

    @property
    def file_id(self) -> str:
        return self.key

    @property
    def live(self) -> bool:
        return not self.ended

    def follow(self, batch: Any) -> bool:
        """Copy what the API says of the batch (an SDK `Batch`) into the record; True if
        anything changed."""
        counts = batch.request_counts
        errors = list((batch.errors.data or []) if batch.errors else [])
        new = {
            "status": batch.status,
            "completed": counts.completed if counts else 0,
            "failed": counts.failed if counts else 0,
            "output_file_id": batch.output_file_id or "",
            "error_file_id": batch.error_file_id or "",
            "error": one_line("; ".join(f"{e.code}: {e.message}" for e in errors[:3]), 500),
            "token_limited": batch.status == "failed"
            and any(e.code == "token_limit_exceeded" for e in errors),
        }
        changed = any(getattr(self, k) != v for k, v in new.items())
        for k, v in new.items():
            setattr(self, k, v)
        return changed

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["rows"] = self.rows.spans
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchRecord:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["rows"] = Lines(values.get("rows") or [])
        return cls(**values)


@dataclass
class JobState:
    """What the job's looks share beyond its batches."""

    # The tick chain allowed to go on (distributed: a newer chain, e.g. a resume's, wins).
    chain: str = ""
    # Lines per file after the enqueued-token limit refused a batch (0: the job's maximum).
    line_cap: int = 0
    # Said in the progress line and by `status` while the job waits on something.
    note: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class JobBatches(NamedTuple):
    """What the store keeps of a job's batches (`load`)."""

    records: list[BatchRecord]  # in upload order
    state: JobState
    extras: dict[str, dict]  # its other entries (`~` keys: the thread map of rounds.py)


def load(store: Batches, job_id: str) -> JobBatches:
    """The job's batch records in upload order, its state, and its other entries."""
    raw = store.batch_records(job_id)
    state = JobState.from_json(raw.pop(STATE_KEY, {}))
    extras = {k: raw.pop(k) for k in [k for k in raw if k.startswith("~")]}
    records = sorted((BatchRecord.from_json(r) for r in raw.values()), key=lambda r: r.seq)
    return JobBatches(records, state, extras)


def save(store: Batches, job_id: str, record: BatchRecord) -> None:
    store.batch_put(job_id, record.key, record.to_json())


def save_state(store: Batches, job_id: str, state: JobState) -> None:
    store.batch_put(job_id, STATE_KEY, asdict(state))


def summary(records: list[BatchRecord]) -> list[str]:
    """One line per batch, for `askbatch status`."""
    lines = []
    for r in records:
        ident = r.batch_id or f"(file {r.file_id}, not created yet)"
        text = f"{ident}: {r.status}, {r.completed} completed, {r.failed} failed of {len(r.rows)}"
        if r.error:
            text += f" ({r.error})"
        lines.append(text)
    return lines
