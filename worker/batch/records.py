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


# Validation errors about a file as a whole, though they may name a line: not the line's fault.
FILE_CODES = frozenset({"too_many_tasks", "file_too_large", "empty_file", "token_limit_exceeded"})
WINDOW_S = 24 * 3600  # the completion window askbatch asks for (api.create)


@dataclass
class BatchRecord:
    key: str  # the input file's id: one batch per file
    seq: int  # 1, 2, ... in order of upload; the spending cap's hold is kept under -seq
    model: str
    rows: Lines  # (row index, attempt) of every line, in file order; a list of pairs is taken too
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
    # Validation failed naming lines ("3": "the server's reason"): no line was asked; the named
    # ones fail their rows, the rest go again in a new batch.
    line_errors: dict[str, str] = field(default_factory=dict)
    # When the server says the batch expires (0: it did not say; the window from submitted_at).
    expires_at: float = 0.0
    # When askbatch asked the server to cancel it (0: never).
    cancel_asked_at: float = 0.0
    # Why askbatch stopped waiting for it ("" unless given up): its unfinished lines go again.
    given_up: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.rows, Lines):
            self.rows = Lines.of(self.rows)

    @property
    def file_id(self) -> str:
        return self.key

    @property
    def live(self) -> bool:
        return not self.ended

    @property
    def unasked(self) -> bool:
        """Refused whole before any line was asked: its lines count no attempt."""
        return self.token_limited or bool(self.line_errors)

    def give_up_at(self, margin_s: float) -> float:
        """When to stop waiting: the end of the completion window plus `margin_s`; and a
        batch still cancelling `margin_s` after askbatch cancelled it."""
        window_end = self.expires_at or (self.submitted_at or self.uploaded_at) + WINDOW_S
        if self.cancel_asked_at:
            return min(window_end, self.cancel_asked_at) + margin_s
        return window_end + margin_s

    def follow(self, batch: Any) -> bool:
        """Copy what the server says of the batch (its JSON object) into the record; True if
        anything changed. Fields missing, null or of another type keep what was known: servers
        skip statuses, leave `request_counts` out until they have counted, or send part of it."""
        if not isinstance(batch, dict):
            return False
        status = _text(batch.get("status")) or self.status
        counts = batch.get("request_counts")
        counts = counts if isinstance(counts, dict) else {}
        errors = batch.get("errors")
        if isinstance(errors, dict):
            errors = errors.get("data")
        errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        codes = [_text(e.get("code")) for e in errors]
        new = {
            "status": status,
            "completed": _count(counts.get("completed"), self.completed),
            "failed": _count(counts.get("failed"), self.failed),
            "output_file_id": _text(batch.get("output_file_id")) or self.output_file_id,
            "error_file_id": _text(batch.get("error_file_id")) or self.error_file_id,
            "expires_at": float(_count(batch.get("expires_at"), int(self.expires_at))),
            "error": one_line("; ".join(_said(e) for e in errors[:3]), 500),
            "token_limited": status == "failed" and "token_limit_exceeded" in codes,
        }
        if status == "failed" and not new["token_limited"]:
            new["line_errors"] = _line_errors(errors, len(self.rows))
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any, known: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else known


def _said(error: dict[str, Any]) -> str:
    """One of a batch's errors as `code: message` (the code, or its type, may be missing)."""
    code = _text(error.get("code")) or _text(error.get("type")) or "error"
    return f"{code}: {_text(error.get('message')) or 'no message'}"


def _line_errors(errors: list[dict[str, Any]], lines: int) -> dict[str, str]:
    """The lines a failed validation names, with the server's reason: only when every error
    names one of the file's lines and is about that line, not about the file."""
    named: dict[str, str] = {}
    for error in errors:
        line = error.get("line")
        if not (isinstance(line, int) and 1 <= line <= lines) or error.get("code") in FILE_CODES:
            return {}
        named.setdefault(str(line), one_line(_said(error), 300))
    return named


@dataclass
class JobState:
    """What the job's looks share beyond its batches."""

    # The chain of looks allowed to go on (distributed: a newer chain, e.g. a resume's, wins).
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
        if r.given_up:
            text += f"; given up: {r.given_up}"
        elif r.line_errors:
            text += (
                f"; refused for {len(r.line_errors)} of its lines, which failed; the others "
                "went again in a new batch"
            )
        elif r.error:
            text += f" ({r.error})"
        lines.append(text)
    return lines
