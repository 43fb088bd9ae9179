"""One look at a --batch job: follow its batches, read the ones that ended, submit what is due.

A look is idempotent and may stop at any point (a kill -9): every step is recorded in the
store before the next one depends on it (worker/batch/records.py). The run process repeats it
(embedded), or a Celery task that schedules its own next look (distributed); `look` returns
when to look again, or None once there is nothing more to do. Following and reading batches
is reading.py, submitting sending.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx2
import openai
import redis

from worker.batch import api, records, rounds
from worker.batch.reading import Asked
from worker.batch.records import TERMINAL, BatchRecord, JobState
from worker.batch.sending import Sender, batches
from worker.errors import LookStopped
from worker.fatal import HALT_ACCESS, classify, is_halt, one_line
from worker.models import CANCELLED, JobSpec
from worker.providers import registry
from worker.retry import is_retryable, short_error
from worker.store import Store

log = logging.getLogger(__name__)

RETRY_S = 10.0  # after the API did not answer a look


@dataclass(slots=True)
class Look:
    delay: float | None  # seconds until the next look; None: nothing more to do
    note: str = ""


def look(store: Store, spec: JobSpec, client: openai.OpenAI, workdir: str | None = None) -> Look:
    """One look, with the API's errors told as what they mean: a halt (a refused key, a
    server without the Batch API or without the job's endpoint) stops the job; a passing one
    waits for the next look. An error askbatch did not expect stops the look (LookStopped)
    and leaves the job to `resume`."""
    try:
        return Batcher(store, spec, client, workdir).look()
    except httpx2.TransportError as exc:  # a file's download cut off: read it again next look
        log.warning("job %s: a Batch API download broke off: %s", spec.job_id, exc)
        return Look(RETRY_S, f"the Batch API did not answer ({short_error(exc)}); retrying")
    except openai.APIError as exc:
        if is_retryable(exc):
            log.warning("job %s: the Batch API did not answer: %s", spec.job_id, exc)
            return Look(RETRY_S, f"the Batch API did not answer ({short_error(exc)}); retrying")
        store.stop(spec.job_id, *_halt(exc, spec))
        return Look(None)
    except (LookStopped, redis.RedisError):
        raise
    except Exception as exc:  # one message, and the job kept for `resume`
        log.debug("job %s: a look failed", spec.job_id, exc_info=exc)
        cause = one_line(f"{type(exc).__name__}: {exc}", 200)
        raise LookStopped(
            f"job {spec.job_id}: a look at its batches stopped on an error askbatch did not "
            f"expect ({cause}). The job is kept as it was: `askbatch resume {spec.job_id}` "
            "looks again"
        ) from exc


def _halt(exc: openai.APIError, spec: JobSpec) -> tuple[str, str]:
    """The stop status and message of an API error no retry can mend."""
    if refused := api.endpoint_refused(exc, registry.get(spec.provider).batch_endpoint):
        return HALT_ACCESS, refused
    halt = classify(exc, provider=spec.provider, base_url=spec.base_url, model=spec.model)
    if halt is not None:
        return halt.status, halt.message
    return HALT_ACCESS, one_line(
        f"the Batch API refused a request ({short_error(exc)}). A server that offers "
        "no /v1/files and /v1/batches cannot take --batch: run without it",
        600,
    )


def cancel(store: Store, spec: JobSpec, client: openai.OpenAI) -> int:
    """Cancel every live batch of the job at the API; returns how many are stopping. Lines
    they finished are kept when they are read (`look`); the rest end `cancelled`."""
    stopping = 0
    for record in records.load(store, spec.job_id).records:
        if not (record.live and record.batch_id and record.status not in TERMINAL):
            continue
        stopping += 1
        if record.cancel_asked_at:
            continue
        # Recorded first: a batch that stays cancelling is given up a margin after it.
        record.cancel_asked_at = time.time()
        records.save(store, spec.job_id, record)
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


class Batcher(Sender):
    def look(self) -> Look:
        spec, job = self.spec, self.spec.job_id
        found, state, extras = records.load(self.store, job)
        threads = rounds.load_threads(extras.get(rounds.THREADS_KEY, {}))
        asked = Asked(found)
        stop = self.store.stopped(job)
        for record in found:
            if record.live:
                self.follow(record, stop, asked, threads)
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
                return Look(self._delay(live), f"stopping: {batches(len(live))} out")
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
            note = self.submit(due, found, state, live)
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
            note = f"{batches(len(live))} out" + (f", {rows} waiting" if waiting else "")
            if given_up := sum(1 for r in found if r.given_up):
                note += f"; {batches(given_up)} given up (see `askbatch status {job}`)"
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
