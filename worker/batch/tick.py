"""One look at a --batch job: follow its batches, read the ones that ended, submit what is due.

A look is idempotent and may stop at any point (a kill -9): every step is recorded in the
store before the next one depends on it (worker/batch/records.py). The run process repeats it
(embedded), or a Celery task that schedules its own next look (distributed); `look` returns
when to look again, or None once there is nothing more to do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx2
import openai

from worker import pricing
from worker.batch import api, records, results, rounds, toolrounds
from worker.batch.lines import LineBuilder, write_files
from worker.batch.records import TERMINAL, BatchRecord, JobState
from worker.fatal import HALT_ACCESS, classify, is_halt, one_line
from worker.limits import spending
from worker.models import CANCELLED, FAILED, SKIPPED, JobSpec, Result, Row, Stop
from worker.providers.base import JobContext
from worker.retry import is_retryable, short_error
from worker.store import Store

log = logging.getLogger(__name__)

MAX_CREATIONS_PER_HOUR = 2000  # the Batch API's limit on batches created per hour
RETRY_S = 10.0  # after the API did not answer a look
SAVE_CHUNK = 1000  # results stored per commit (SQLite) or round trip (Redis)


@dataclass(slots=True)
class Look:
    delay: float | None  # seconds until the next look; None: nothing more to do
    note: str = ""


def look(store: Store, spec: JobSpec, client: openai.OpenAI, workdir: str | None = None) -> Look:
    """One look, with the API's errors told as what they mean: a halt (a refused key, a
    server without the Batch API) stops the job; a passing one waits for the next look."""
    try:
        return Batcher(store, spec, client, workdir).look()
    except httpx2.TransportError as exc:  # a file's download cut off: read it again next look
        log.warning("job %s: a Batch API download broke off: %s", spec.job_id, exc)
        return Look(RETRY_S, f"the Batch API did not answer ({short_error(exc)}); retrying")
    except openai.APIError as exc:
        if is_retryable(exc):
            log.warning("job %s: the Batch API did not answer: %s", spec.job_id, exc)
            return Look(RETRY_S, f"the Batch API did not answer ({short_error(exc)}); retrying")
        halt = classify(exc, provider=spec.provider, base_url=spec.base_url, model=spec.model)
        if halt is None:
            message = one_line(
                f"the Batch API refused a request ({short_error(exc)}). A server that offers "
                "no /v1/files and /v1/batches cannot take --batch: run without it",
                600,
            )
            store.stop(spec.job_id, HALT_ACCESS, message)
        else:
            store.stop(spec.job_id, halt.status, halt.message)
        return Look(None)


def cancel(store: Store, spec: JobSpec, client: openai.OpenAI) -> int:
    """Cancel every live batch of the job at the API; returns how many are stopping. Lines
    they finished are kept when they are read (`look`); the rest end `cancelled`."""
    stopping = 0
    for record in records.load(store, spec.job_id).records:
        if not (record.live and record.batch_id and record.status not in TERMINAL):
            continue
        stopping += 1
        if record.status == "cancelling":
            continue
        try:
            api.cancel(client, record.batch_id)
        except openai.APIStatusError as exc:
            # Ended meanwhile, or already cancelling (the run's own look cancelled it first):
            # either way the next look reads it.
            log.info("batch %s not cancelled: %s", record.batch_id, short_error(exc))
    return stopping


# Per job, how the last look in this process left it (records, ended, rows done) when it had
# sent every due row: the next look with the same counts has nothing new to send.
_settled: dict[str, tuple[int, int, int]] = {}


def _seen(found: list[BatchRecord], done: int) -> tuple[int, int, int]:
    return len(found), sum(r.ended for r in found), done


class _Asked:
    """Times each row was asked (worker/batch/rounds.submissions), counted only when a look
    reads a batch that ended: a look that only polls never walks every line."""

    def __init__(self, found: list[BatchRecord]) -> None:
        self.found = found
        self._asked: dict[int, int] | None = None

    def get(self, index: int, default: int = 0) -> int:
        if self._asked is None:
            self._asked = rounds.submissions(self.found)[1]
        return self._asked.get(index, default)

    def __getitem__(self, index: int) -> int:
        return self.get(index)


class Batcher:
    def __init__(
        self, store: Store, spec: JobSpec, client: openai.OpenAI, workdir: str | None = None
    ) -> None:
        self.store = store
        self.spec = spec
        self.client = client
        self.workdir = workdir
        self.job = JobContext(spec)
        self.builder = LineBuilder(self.job)

    def look(self) -> Look:
        spec, job = self.spec, self.spec.job_id
        found, state, extras = records.load(self.store, job)
        threads = rounds.load_threads(extras.get(rounds.THREADS_KEY, {}))
        asked = _Asked(found)
        stop = self.store.stopped(job)
        for record in found:
            if record.live:
                self._follow(record, stop, asked, threads)
                if record.token_limited and record.ended:
                    # Refused for the organisation's enqueued tokens: try again once the
                    # running batches are done, and smaller if nothing else was running.
                    others = [r for r in found if r.live]
                    if not others:
                        state.line_cap = max(1, len(record.rows) // 2)
                    records.save_state(self.store, job, state)
        stop = self.store.stopped(job)
        live = [r for r in found if r.live]
        if is_halt(stop):
            return Look(None)
        if stop:
            if live and stop.status == CANCELLED:  # cancelled from anywhere: the batches too
                cancel(self.store, spec, self.client)
            if live:
                return Look(self._delay(live), f"stopping: {_batches(len(live))} out")
            self.store.mark_unstarted(job, self.store.missing(job, spec.total), *stop)
            return self._ended(state)
        # Rows become due only when a batch ends, when a look stopped short of submitting
        # them, or when results are dropped (resume --retry-failed): a look that finds the
        # job as the last one in this process left it, every due row sent, skips the search.
        progress = self.store.progress(job)
        if _settled.get(job) == _seen(found, progress.done):
            due = []
        else:
            due = rounds.due_rows(self.store, spec, found, threads)
        note = ""
        if due:
            note = self._submit(due, found, state, live)
            live = [r for r in found if r.live]
            progress = self.store.progress(job)
        if not note:
            _settled[job] = _seen(found, progress.done)
        if not live and (progress.done >= spec.total or not due):
            # Done; or nothing out and nothing to send (rows that can never be asked).
            return self._ended(state)
        if not note:
            waiting = spec.total - progress.done - sum(len(r.rows) for r in live)
            rows = f"{waiting} row" + "s" * (waiting != 1)
            note = f"{_batches(len(live))} out" + (f", {rows} waiting" if waiting else "")
        if state.note != note:
            state.note = note
            records.save_state(self.store, job, state)
        return Look(self._delay(live) if live else RETRY_S, note)

    def _ended(self, state: JobState) -> Look:
        """Nothing more to do: no note left for `status` to show."""
        _settled.pop(self.spec.job_id, None)
        if state.note:
            state.note = ""
            records.save_state(self.store, self.spec.job_id, state)
        return Look(None)

    def _delay(self, live: list[BatchRecord]) -> float:
        """The poll interval, shorter while the batches are young (small batches end fast)."""
        youngest = max(r.submitted_at or r.uploaded_at for r in live)
        age = max(0.0, time.time() - youngest)
        return max(0.5, min(self.spec.batch_poll_s, 0.5 + age / 10))

    # --- following a batch ----------------------------------------------------------------

    def _follow(
        self,
        record: BatchRecord,
        stop: Stop | None,
        asked: _Asked,
        threads: rounds.Threads,
    ) -> None:
        job = self.spec.job_id
        if not record.batch_id:
            batch = api.find_batch(self.client, job, record.file_id, record.uploaded_at)
            if batch is None and stop:
                # Never created and the job is stopping: its lines were never asked.
                record.status, record.ended = "not created", True
                records.save(self.store, job, record)
                return
            if batch is None:
                batch = api.create(self.client, job, record.file_id, self.builder.url)
            record.batch_id, record.submitted_at = batch.id, float(batch.created_at)
            records.save(self.store, job, record)
        batch = api.retrieve(self.client, record.batch_id)
        changed = record.follow(batch)
        if record.status in TERMINAL:
            self._ingest(record, stop, asked, threads)
            record.ended = True
            changed = True
        if changed:
            records.save(self.store, job, record)

    def _ingest(
        self,
        record: BatchRecord,
        stop: Stop | None,
        asked: _Asked,
        threads: rounds.Threads,
    ) -> None:
        """Read a batch that ended: keep every finished line; lines to ask again are left
        without a result (so they are due again), unless their attempts are spent. Results
        are stored SAVE_CHUNK at a time, as the files stream in."""
        spent = Decimal(0)
        chunk: list[Result] = []
        for result in self._results(record, stop, asked, threads):
            chunk.append(result)
            if len(chunk) >= SAVE_CHUNK:
                spent += self._save(chunk)
                chunk = []
        spent += self._save(chunk)
        if self.spec.max_cost:
            self.store.settle(self.spec.job_id, -record.seq, pricing.nano(spent))

    def _save(self, chunk: list[Result]) -> Decimal:
        """Store the results (first writer wins); returns what the newly stored ones cost."""
        if not chunk:
            return Decimal(0)
        saved = self.store.save_many(self.spec.job_id, chunk)
        pairs = zip(chunk, saved, strict=True)
        return sum((r.cost_usd or Decimal(0) for r, new in pairs if new), Decimal(0))

    def _results(
        self,
        record: BatchRecord,
        stop: Stop | None,
        asked: _Asked,
        threads: rounds.Threads,
    ) -> Iterator[Result]:
        spec, job = self.spec, self.spec.job_id
        pending = {index: attempt for index, attempt in record.rows}
        latency = max(0.0, time.time() - record.submitted_at)
        # With function tools, the rows' tool rounds so far (kept with the rows).
        stored = self.store.rows_get(job, pending) if self.job.toolbox else {}
        going_on: list[dict] = []
        for file_id in (record.output_file_id, record.error_file_id):
            if not file_id:
                continue
            for raw in api.lines(self.client, file_id):
                parsed = results.parse(raw, job)
                if parsed is None or pending.get(parsed[0]) != parsed[1]:
                    continue  # not a line of this batch
                index, attempt, line = parsed
                del pending[index]
                row = Row(index, "", "", model=record.model)
                thread_id = threads.thread_id(job, index)
                so_far = toolrounds.Continuing.from_json(
                    stored.get(index, {}).get(toolrounds.CONTINUING)
                )
                if so_far.after == attempt:
                    continue  # its tools ran when an earlier look read this line
                out = results.outcome(self.job, row, attempt, line, latency, thread_id, so_far)
                if out.continuing is not None:
                    cont = out.continuing.to_json()
                    going_on.append({**stored[index], toolrounds.CONTINUING: cont})
                elif out.result is not None:
                    yield out.result
                elif asked.get(index) >= spec.max_attempts:
                    yield results.gave_up(row, asked[index], out.again, out.unfinished)
        if going_on:  # stored before the batch is marked read, so a crash loses no round
            self.store.rows_put(job, going_on)
        cancelled = bool(stop) and stop.status == CANCELLED
        for index in pending:  # lines the batch returned nothing for
            reason = record.error or f"the batch ended {record.status} before the line was asked"
            if record.status == "failed" and not record.token_limited:
                yield Result(index, FAILED, error=reason, attempts=asked.get(index))
            elif not record.token_limited and not cancelled and asked[index] >= spec.max_attempts:
                yield results.gave_up(Row(index, "", ""), asked[index], reason, True)

    # --- submitting -------------------------------------------------------------------

    def _line(self, due: rounds.Due) -> tuple[str, int, int, bytes]:
        items = due.continuing.items if due.continuing else []
        line = self.builder.line(due.row, due.attempt, due.history, items)
        return self.job.model(due.row), due.row.index, due.attempt, line

    def _submit(
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
                f"{_batches(len(live))} running, then {len(due)} rows go again in batches of "
                f"{state.line_cap or spec.batch_max_lines} lines"
            )
        hour_ago = time.time() - 3600
        created = created_before = sum(1 for r in found if r.submitted_at > hour_ago)
        by_index = {d.row.index: d for d in due}
        seq = max((r.seq for r in found), default=0)
        cap = int(Decimal(spec.max_cost) * pricing.NANO) if spec.max_cost else 0
        lines = (self._line(d) for d in due)
        note = ""
        for part in write_files(lines, state.line_cap or spec.batch_max_lines, self.workdir):
            try:
                if created >= MAX_CREATIONS_PER_HOUR:
                    note = f"{MAX_CREATIONS_PER_HOUR} batches created this hour: the rest waits"
                    break
                if state.line_cap and created > created_before:
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
                batch = api.create(self.client, job, record.file_id, self.builder.url)
                record.batch_id, record.status = batch.id, batch.status
                record.submitted_at = float(batch.created_at)
                records.save(self.store, job, record)
                created += 1
            finally:
                os.unlink(part.path)
        return note


def _batches(n: int) -> str:
    return f"{n} batch" if n == 1 else f"{n} batches"


def _last_ok(found: list[BatchRecord]) -> int:
    return max((r.seq for r in found if not r.token_limited), default=0)


def _hold(spec: JobSpec, row: Row, prior: Result | None) -> Decimal:
    return spending.hold_for(spec, row, prior.usage if prior else None)
