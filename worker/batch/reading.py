"""Following a job's batches at the server: each batch's status, the output and error files of
those that ended read into row results, and the batches that never end given up.

Nothing a server sends stops this for good: a line askbatch cannot read fails its row
(results.read), a batch that stays unended past its completion window plus
`batch_margin_s` is cancelled and its unfinished lines go again, and an error askbatch did not
expect while at one batch closes that batch (its rows without an answer fail with the cause)
before it stops the look, so the next look finds the batch read.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx2
import openai
import redis

from worker import pricing
from worker.batch import api, records, results, rounds, toolrounds
from worker.batch.lines import LineBuilder
from worker.batch.records import TERMINAL, BatchRecord
from worker.errors import LookStopped
from worker.fatal import one_line
from worker.models import BATCH_TIER, CANCELLED, FAILED, JobSpec, Result, Row, Stop
from worker.providers.base import JobContext
from worker.retry import short_error
from worker.store import Store

log = logging.getLogger(__name__)

SAVE_CHUNK = 1000  # results stored per commit (SQLite) or round trip (Redis)
# What a look hands on as they are: the API's errors (told apart in looks.look) and the store's
# (a distributed look is retried; an embedded one ends with the store's message).
StopOrNone = Stop | None  # the job's stop, if it has one
PASSED_ON = (openai.APIError, httpx2.TransportError, redis.RedisError, sqlite3.Error, LookStopped)


class Asked:
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


@dataclass(slots=True)
class _Reading:
    """A batch's reading so far: its lines not read yet (row: attempt), the rows' stored JSON
    (with function tools), and the rows whose tools ran, to store before it is marked read."""

    pending: dict[int, int]
    stored: dict[int, dict]
    going_on: list[dict]


class Reader:
    def __init__(self, store: Store, spec: JobSpec, client: openai.OpenAI) -> None:
        self.store = store
        self.spec = spec
        self.client = client
        self.job = JobContext(spec)
        self.builder = LineBuilder(self.job)

    def follow(self, record: BatchRecord, stop: StopOrNone, asked: Asked, threads: rounds.Threads):
        """Follow one live batch; read it if it ended, give it up if it never does."""
        try:
            self._follow(record, stop, asked, threads)
        except PASSED_ON:
            raise
        except Exception as exc:  # whatever it was, this batch must not stay unreadable
            raise self._fault(record, exc) from exc

    def _follow(self, record: BatchRecord, stop: StopOrNone, asked: Asked, threads: rounds.Threads):
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
            created(record, batch)
            records.save(self.store, job, record)
        if time.time() >= record.give_up_at(self.spec.batch_margin_s):
            self._give_up(record, stop, asked, threads)
            return
        try:
            batch = api.retrieve(self.client, record.batch_id)
        except openai.NotFoundError as exc:  # it was created: the server has lost it since
            record.given_up = f"the server no longer knows it ({short_error(exc)})"
            self._close(record, stop, asked, threads)
            return
        changed = record.follow(batch)
        if record.status in TERMINAL:
            self._close(record, stop, asked, threads)
        elif changed:
            records.save(self.store, job, record)

    def _give_up(
        self, record: BatchRecord, stop: StopOrNone, asked: Asked, threads: rounds.Threads
    ):
        """Past its window and margin, or still cancelling a margin after it was cancelled
        (OGX keeps a batch a restart interrupted `in_progress` for ever): cancel it at the
        server, keep what it finished if it says so, and send its other lines again."""
        was, cancelled_before = record.status, bool(record.cancel_asked_at)
        try:
            if not cancelled_before:
                record.cancel_asked_at = time.time()
                api.cancel(self.client, record.batch_id)
            record.follow(api.retrieve(self.client, record.batch_id))
        except (openai.APIError, httpx2.TransportError) as exc:
            log.info("batch %s given up; the server said: %s", record.batch_id, short_error(exc))
        if record.status not in TERMINAL:
            if cancelled_before:
                record.given_up = f"still {was} at the server {_ago(record.cancel_asked_at)} after "
                record.given_up += "askbatch cancelled it"
            else:
                since = record.submitted_at or record.uploaded_at
                record.given_up = f"still {was} at the server {_ago(since)} after it was created"
            if not (stop and stop.status == CANCELLED):
                record.given_up += "; cancelled there, its unfinished lines were submitted again"
        self._close(record, stop, asked, threads)

    def _close(self, record: BatchRecord, stop: StopOrNone, asked: Asked, threads: rounds.Threads):
        """Read what the batch ended with, then mark it read: stored results first, so that a
        look killed in between reads it again rather than losing it (first writer wins)."""
        self._ingest(record, stop, asked, threads)
        record.ended = True
        records.save(self.store, self.spec.job_id, record)

    def _fault(self, record: BatchRecord, exc: Exception) -> LookStopped:
        """Close a batch askbatch could not follow: its rows without a result fail with the
        cause (`resume --retry-failed` asks them again), so no later look meets it again."""
        job = self.spec.job_id
        cause = one_line(f"{type(exc).__name__}: {exc}", 200)
        log.debug("job %s: following batch %s failed", job, record.batch_id, exc_info=exc)
        name = record.batch_id or f"(file {record.file_id})"
        error = f"askbatch could not read batch {name}: {cause}"
        failed = [
            Result(index, FAILED, error=error, attempts=attempt, service_tier=BATCH_TIER)
            for index, attempt in record.rows
        ]
        for start in range(0, len(failed), SAVE_CHUNK):
            self.store.save_many(job, failed[start : start + SAVE_CHUNK])  # first writer wins
        record.given_up, record.ended = f"askbatch could not read it: {cause}", True
        records.save(self.store, job, record)
        return LookStopped(
            f"job {job}: reading batch {name} stopped on an error askbatch did not expect "
            f"({cause}); its rows without an answer are marked failed with that cause. The "
            f"rest of the job is kept: `askbatch resume {job}` goes on with it, "
            f"`askbatch resume {job} --retry-failed` asks those rows again"
        )

    def _ingest(self, record: BatchRecord, stop: StopOrNone, asked: Asked, threads: rounds.Threads):
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
        self, record: BatchRecord, stop: StopOrNone, asked: Asked, threads: rounds.Threads
    ) -> Iterator[Result]:
        job = self.spec.job_id
        pending = {index: attempt for index, attempt in record.rows}
        # With function tools, the rows' tool rounds so far (kept with the rows).
        stored = self.store.rows_get(job, pending) if self.job.toolbox else {}
        going_on: list[dict] = []
        read = _Reading(pending, stored, going_on)
        for file_id in (record.output_file_id, record.error_file_id):
            if file_id:
                yield from self._read_file(record, file_id, read, asked, threads)
        if going_on:  # stored before the batch is marked read, so a crash loses no round
            self.store.rows_put(job, going_on)
        yield from self._unreturned(record, pending, stop, asked)

    def _read_file(
        self,
        record: BatchRecord,
        file_id: str,
        read: _Reading,
        asked: Asked,
        threads: rounds.Threads,
    ) -> Iterator[Result]:
        """The results of one output or error file's lines; a file the server no longer has
        (404) leaves its lines unread, to be asked again."""
        spec, job = self.spec, self.spec.job_id
        pending, stored = read.pending, read.stored
        latency = max(0.0, time.time() - record.submitted_at)
        try:
            for raw in api.lines(self.client, file_id):
                parsed = results.parse(raw, job)
                if parsed is None or pending.get(parsed[0]) != parsed[1]:
                    continue  # not a line of this batch, or one already read
                index, attempt, line = parsed
                del pending[index]
                row = Row(index, "", "", model=record.model)
                thread_id = threads.thread_id(job, index)
                so_far = toolrounds.Continuing.from_json(
                    stored.get(index, {}).get(toolrounds.CONTINUING)
                )
                if so_far.after == attempt:
                    continue  # its tools ran when an earlier look read this line
                out = results.read(self.job, row, attempt, line, latency, thread_id, so_far)
                if out.continuing is not None:
                    cont = out.continuing.to_json()
                    read.going_on.append({**stored[index], toolrounds.CONTINUING: cont})
                elif out.result is not None:
                    yield out.result
                elif asked.get(index) >= spec.max_attempts:
                    yield results.gave_up(row, asked[index], out.again, out.unfinished)
        except openai.NotFoundError as exc:
            record.given_up = f"its file {file_id} is gone at the server ({short_error(exc)})"

    def _unreturned(
        self, record: BatchRecord, pending: dict[int, int], stop: StopOrNone, asked: Asked
    ) -> Iterator[Result]:
        """The lines the batch returned nothing for: failed with the batch's reason when it
        failed as a whole; failed alone when its validation named them (the others go
        again, unasked); otherwise asked again in a later batch while attempts remain."""
        if record.token_limited or not pending:
            return
        if record.line_errors:
            lines = enumerate(record.rows, 1)
            named = {i: record.line_errors.get(str(n)) for n, (i, _) in lines if i in pending}
            for index, reason in named.items():
                if reason:
                    error = f"the server refused the line: {reason}"
                    yield Result(index, FAILED, error=error, attempts=pending[index])
            return
        if record.status == "failed" and not record.given_up:
            reason = record.error or "the batch failed"
            for index in pending:
                yield Result(index, FAILED, error=reason, attempts=asked.get(index))
            return
        if stop and stop.status == CANCELLED:
            return  # written `cancelled` with the rest of the job (looks.look)
        reason = (
            f"batch {record.batch_id} given up: {record.given_up}"
            if record.given_up
            else f"the batch ended {record.status} before the line was asked"
        )
        for index in pending:
            if asked[index] >= self.spec.max_attempts:
                yield results.gave_up(Row(index, "", ""), asked[index], reason, True)


def _ago(since: float) -> str:
    seconds = max(0.0, time.time() - since)
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def created(record: BatchRecord, batch: dict) -> None:
    """Record the batch the server created for the record's file (its JSON object)."""
    batch_id = batch.get("id")
    if not isinstance(batch_id, str) or not batch_id:
        raise ValueError("the server created a batch but gave no id for it")
    at = batch.get("created_at")
    record.batch_id = batch_id
    record.submitted_at = float(at) if isinstance(at, int | float) else time.time()
    record.follow(batch)
