"""Sending a job's due rows: their lines written to JSONL files, each file uploaded and made a
batch, within the Batch API's limits (batches an hour, enqueued tokens) and the spending cap.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

import openai

from worker import pricing
from worker.batch import api, records, rounds
from worker.batch.lines import write_files
from worker.batch.reading import Reader, created
from worker.batch.records import BatchRecord, JobState
from worker.limits import spending
from worker.models import SKIPPED, JobSpec, Result, Row
from worker.store import Store

MAX_CREATIONS_PER_HOUR = 2000  # the Batch API's limit on batches created per hour


class Sender(Reader):
    def __init__(
        self, store: Store, spec: JobSpec, client: openai.OpenAI, workdir: str | None = None
    ) -> None:
        super().__init__(store, spec, client)
        self.workdir = workdir

    def _line(self, due: rounds.Due) -> tuple[str, int, int, bytes]:
        items = due.continuing.items if due.continuing else []
        line = self.builder.line(due.row, due.attempt, due.history, items)
        return self.job.model(due.row), due.row.index, due.attempt, line

    def submit(
        self,
        due: list[rounds.Due],
        found: list[BatchRecord],
        state: JobState,
        live: list[BatchRecord],
    ) -> str:
        """Write, upload and create batches for the due rows; returns a note for the progress
        line when something holds them back."""
        spec, job = self.spec, self.spec.job_id
        if live and any(r.token_limited for r in found if r.ended and r.seq > _last_ok(found)):
            return (
                f"the organisation's enqueued-token limit refused a batch: waiting for "
                f"{batches(len(live))} running, then {len(due)} rows go again in batches of "
                f"{state.line_cap or spec.batch_max_lines} lines"
            )
        hour_ago = time.time() - 3600
        made = made_before = sum(1 for r in found if r.submitted_at > hour_ago)
        by_index = {d.row.index: d for d in due}
        seq = max((r.seq for r in found), default=0)
        cap = int(Decimal(spec.max_cost) * pricing.NANO) if spec.max_cost else 0
        lines = (self._line(d) for d in due)
        note = ""
        for part in write_files(lines, state.line_cap or spec.batch_max_lines, self.workdir):
            try:
                if made >= MAX_CREATIONS_PER_HOUR:
                    note = f"{MAX_CREATIONS_PER_HOUR} batches created this hour: the rest waits"
                    break
                if state.line_cap and made > made_before:
                    # Once the enqueued-token limit has refused a batch: one at a time.
                    note = (
                        f"the enqueued-token limit: submitting one batch of at most "
                        f"{state.line_cap} lines at a time"
                    )
                    break
                seq += 1
                hold = 0
                if cap:
                    hold = sum(
                        pricing.nano(_hold(spec, by_index[i].row, by_index[i].prior))
                        for i, _ in part.rows
                    )
                    if not self.store.reserve(job, -seq, hold, cap):
                        self.store.stop(job, SKIPPED, spending.reason(spec))
                        note = "the spending cap would be passed: no more batches"
                        break
                record = BatchRecord(
                    key=api.upload(self.client, part.path),
                    seq=seq,
                    model=part.model,
                    rows=part.rows,
                    hold_nusd=hold,
                )
                records.save(self.store, job, record)  # before the batch exists: see records
                found.append(record)
                # A server refusing the batch (its endpoint, say) raises here: no other file
                # is uploaded, and looks.look says why.
                created(record, api.create(self.client, job, record.file_id, self.builder.url))
                records.save(self.store, job, record)
                made += 1
            finally:
                os.unlink(part.path)
        return note


def batches(n: int) -> str:
    return f"{n} batch" if n == 1 else f"{n} batches"


def _last_ok(found: list[BatchRecord]) -> int:
    return max((r.seq for r in found if not r.token_limited), default=0)


def _hold(spec: JobSpec, row: Row, prior: Result | None) -> Decimal:
    return spending.hold_for(spec, row, prior.usage if prior else None)
