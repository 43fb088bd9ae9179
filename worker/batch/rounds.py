"""Which rows a job's next batches hold: threads in rounds, retries, and giving up.

Round k holds turn k of every thread still going: a turn is due once every earlier turn of its
thread has a result, and its line carries those turns as messages. After a turn that did not
complete, the rest of the thread is `skipped` (unless continue_on_error), as in a synchronous
run (worker/runner.py). A row is never due while it sits in a live batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from worker.batch.records import BatchRecord
from worker.batch.toolrounds import CONTINUING, Continuing
from worker.models import COMPLETED, JobSpec, Result, Row
from worker.runner import skipped_result
from worker.store import Batches, Store

THREADS_KEY = "~threads"  # the job's threads of two rows or more, beside its batch records


@dataclass(slots=True)
class Due:
    row: Row
    attempt: int  # the line's attempt number (its custom_id's last part)
    history: list[dict[str, Any]] = field(default_factory=list)
    prior: Result | None = None  # the thread's previous turn, for the spending cap's hold
    continuing: Continuing | None = None  # its tool rounds so far (worker/batch/toolrounds)


class Threads:
    """Each threaded row's thread: its rows in order. Unthreaded rows are their own."""

    def __init__(self, groups: Iterable[list[int]]) -> None:
        self.of: dict[int, list[int]] = {}
        for group in groups:
            for index in group:
                self.of[index] = group

    def earlier(self, index: int) -> list[int]:
        group = self.of.get(index)
        return group[: group.index(index)] if group else []

    def thread_id(self, job_id: str, index: int) -> str:
        """askbatch's own id for the row's thread (the Batch API keeps no conversation)."""
        first = self.of.get(index, [index])[0]
        return "batch_" + hashlib.sha256(f"{job_id}\0{first}".encode()).hexdigest()[:24]


def save_threads(store: Batches, job_id: str, groups: Iterable[list[int]]) -> None:
    store.batch_put(job_id, THREADS_KEY, {"threads": [g for g in groups if len(g) > 1]})


def load_threads(raw: dict[str, Any]) -> Threads:
    return Threads(raw.get("threads") or [])


def submissions(records: list[BatchRecord]) -> tuple[dict[int, int], dict[int, int]]:
    """(lines sent, times asked) per row: every batch it was in, and those not refused whole
    before any line was asked (the enqueued-token limit, a validation naming lines: those
    lines count no attempt)."""
    sent: dict[int, int] = {}
    asked: dict[int, int] = {}
    for record in records:
        for index, _ in record.rows:
            sent[index] = sent.get(index, 0) + 1
            if not record.unasked:
                asked[index] = asked.get(index, 0) + 1
    return sent, asked


def due_rows(
    store: Store, spec: JobSpec, records: list[BatchRecord], threads: Threads
) -> list[Due]:
    """The rows to put in new batches now, in input order; records `skipped` the later turns
    of a broken thread on the way."""
    missing = set(store.missing(spec.job_id, spec.total))
    out = {index for r in records if r.live for index, _ in r.rows}
    candidates = sorted(missing - out)
    if not candidates:
        return []
    sent, _ = submissions(records)
    waiting: list[tuple[int, list[int]]] = []
    for index in candidates:
        earlier = threads.earlier(index)
        if any(e in missing for e in earlier):
            continue  # a later round
        waiting.append((index, earlier))
    wanted = {i for index, earlier in waiting for i in (index, *earlier)}
    raw = store.rows_get(spec.job_id, wanted)
    rows = {i: Row.from_json(r) for i, r in raw.items()}
    done = store.get(spec.job_id, {e for _, earlier in waiting for e in earlier})
    due: list[Due] = []
    for index, earlier in waiting:
        row = rows[index]
        turns = [done[e] for e in earlier]
        broken = next((t for t in turns if t.status != COMPLETED), None)
        if broken is not None and not spec.continue_on_error:
            _skip_rest(store, spec, threads, row, broken, missing - out)
            continue
        history: list[dict[str, Any]] = []
        for e, turn in zip(earlier, turns, strict=True):
            if turn.status == COMPLETED:  # as a synchronous chat thread keeps it
                history += [
                    {"role": "user", "content": rows[e].question},
                    {"role": "assistant", "content": turn.answer},
                ]
        so_far = raw[index].get(CONTINUING)
        due.append(
            Due(
                row,
                sent.get(index, 0) + 1,
                history,
                turns[-1] if turns else None,
                Continuing.from_json(so_far) if so_far else None,
            )
        )
    return due


def _skip_rest(
    store: Store, spec: JobSpec, threads: Threads, row: Row, broken: Result, open_: set[int]
) -> None:
    """Record `skipped` for this turn and every later one of its thread still open: each
    would wait on the one before, a round apart, for the same outcome."""
    group = threads.of.get(row.index, [row.index])
    later = [i for i in group[group.index(row.index) + 1 :] if i in open_]
    rows = {row.index: row} | {
        i: Row.from_json(r) for i, r in store.rows_get(spec.job_id, later).items()
    }
    for index in [row.index, *later]:
        thread_id = threads.thread_id(spec.job_id, index)
        store.save(spec.job_id, skipped_result(rows[index], broken, thread_id))
