"""Answering rows: the plain functions a task calls. No Celery, no CSV here."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from worker.cancel import watch_for
from worker.check import Check, CheckRule, checked
from worker.errors import Halted, RowBusy, RowTimeout, TooLate
from worker.fatal import classify, is_halt, one_line
from worker.limits import spending
from worker.limits.rate.budget import Budget, budget_for
from worker.limits.rate.flight import Flight
from worker.models import COMPLETED, EXPIRED, FAILED, SKIPPED, JobSpec, Result, Row, Usage
from worker.profile import Profile
from worker.providers.base import Provider, Thread, Turn
from worker.retry import Retrier, short_error
from worker.store import Claims, JobControl, Ledger, Pacing, Results
from worker.structured import split_answer
from worker.tools import ToolLog

log = logging.getLogger(__name__)


# Jobs this process has seen halted: its rows in flight send no further request (the other
# processes learn it from the store when they come to their next row).
_halted: set[str] = set()


def _still_halted(store: JobControl, job_id: str) -> bool:
    """Seen halted here, and not resumed since (a resume lifts the store's stop)."""
    if job_id not in _halted:
        return False
    if is_halt(store.stopped(job_id)):
        return True
    _halted.discard(job_id)
    return False


def claim_ttl(spec: JobSpec) -> float:
    # Long enough for the row's own deadline plus the cancel call that may follow it.
    return spec.timeout_s + 60


class RowStore(Claims, Results, JobControl, Ledger, Pacing, Protocol):
    """The store's roles that answering rows touches."""


def answer_rows(
    store: RowStore,
    spec: JobSpec,
    provider: Provider,
    rows: list[Row],
    flight: Flight | None = None,
    solver: Provider | None = None,
) -> int:
    """Answer the rows of one thread in order; returns how many were answered now.

    `flight`, the job's gate in this process, holds each row asked until it may be in flight
    (worker/limits/rate/flight.py). `solver` answers a profile's [check] (worker/check.py).

    Rows that already have a stored result are passed over (so a redelivered task never asks
    an answered question again), but their turns still count as the thread's history.
    After a turn that did not complete, the rest of the thread is `skipped` unless the job
    says continue_on_error: later turns would be asked without the answer they build on.
    """
    profile = Profile.from_json(spec.profile)
    schema = profile.schema
    check = Check(CheckRule.from_json(profile.check), solver) if profile.check and solver else None
    thread: Thread | None = None
    broken: Result | None = None  # the turn that ended the thread
    prior: Usage | None = None  # the thread's last turn: a later turn resends it
    answered = 0
    for n, row in enumerate(rows):
        # One store call looks at the row and claims it: a result stored by an earlier
        # delivery, the job's stop (cancelled, or its spending cap), or a claim held elsewhere.
        start = store.begin(spec.job_id, row.index, claim_ttl(spec), first=n == 0)
        if done := start.done:
            thread = _resume_thread(thread, row, done)
            prior = done.usage
            if done.status != COMPLETED and not spec.continue_on_error:
                broken = broken or done
            continue
        if (stop := start.stop) and is_halt(stop):
            # Halted (a refused key, an empty account...): the rest stays unasked, without a
            # result, so that `askbatch resume` asks it once the cause is fixed.
            _halted.add(spec.job_id)
            break
        if stop:
            # Rows not started are not sent; `askbatch cancel` marks only unclaimed rows, and
            # the claim is taken in the same step as this look, so each row gets one result.
            store.save(spec.job_id, Result(index=row.index, status=stop.status, error=stop.reason))
            continue
        if not start.claimed:
            raise RowBusy(row.index, store.lease_s)
        result: Result | None = None
        held: int | None = None  # what the spending cap holds for a row that is asked
        try:
            if broken is not None:
                result = _skipped(row, broken, thread)
            elif (held := spending.reserve(store, spec, row, prior)) is None:
                # Over the spending cap: this row and all not started are skipped.
                store.stop(spec.job_id, SKIPPED, spending.reason(spec))
                result = Result(row.index, SKIPPED, error=spending.reason(spec))
            else:
                budget = budget_for(store, spec, row.model or spec.model)
                in_flight = flight.row(budget) if flight else contextlib.nullcontext()
                with in_flight, watch_for(store).row(spec.job_id) as on_run:
                    halted = lambda: _still_halted(store, spec.job_id)  # noqa: E731
                    result, thread = answer_row(
                        spec, provider, thread, row, schema, on_run, budget, halted, check
                    )
                answered += 1
        except Halted as exc:
            # The row stays without a result (its claim is let go below) and so does the rest.
            if exc.halt is not None:
                if spec.job_id not in _halted:  # once per process (the CLI says it too)
                    log.info("job %s halted: %s", spec.job_id, exc.halt.message)
                _halted.add(spec.job_id)
                store.stop(spec.job_id, exc.halt.status, exc.halt.message)
            if held:
                spending.settle(store, spec, Result(row.index, FAILED))  # gives the hold back
            return answered
        finally:
            if result is None:  # the store failed under us: let another delivery take the row
                store.release(spec.job_id, row.index)
        store.finish(spec.job_id, result)
        if held is None:  # skipped, not asked
            continue
        spending.settle(store, spec, result)
        prior = result.usage
        if result.status != COMPLETED and not spec.continue_on_error:
            broken = result
    return answered


def answer_row(
    spec: JobSpec,
    provider: Provider,
    thread: Thread | None,
    row: Row,
    schema: dict | None = None,
    on_run: Callable[[Callable[[], None]], None] | None = None,
    budget: Budget | None = None,
    halted: Callable[[], bool] = lambda: False,
    check: Check | None = None,
) -> tuple[Result, Thread | None]:
    """Run one question; every failure becomes the row's result, never an exception.

    `on_run` receives a function that cancels the row's run, where the API can cancel one.
    With a `check`, the answer is solved again and may be asked for again (worker/check.py),
    within the same row timeout.
    """
    started = time.monotonic()
    retrier = Retrier(
        spec.max_attempts,
        deadline=started + spec.timeout_s,
        request_timeout=spec.request_timeout_s,
        base=spec.backoff_s,
        cap=spec.backoff_cap_s,
        budget=budget,
        halted=halted,
    )
    if on_run is not None:
        retrier.on_run = on_run
    tools = ToolLog()
    follow_up = thread is not None  # a later turn: its question may need the thread's
    try:
        if thread is None:
            thread = provider.open_thread(retrier)
        turn = provider.ask(thread, row, retrier, tools)
        if check is not None:
            valid = lambda t: schema is None or not split_answer(t.answer, schema)[1]  # noqa: E731
            turn = checked(check, provider, thread, row, turn, retrier, tools, valid, follow_up)
    except RowTimeout:
        turn = Turn(EXPIRED, error=f"no answer within the row timeout of {spec.timeout_s:g}s")
    except (Halted, TooLate) as exc:
        if isinstance(exc, Halted):
            raise
        turn = Turn(status=FAILED, error=str(exc))
    except Exception as exc:  # one failing row never stops the job, unless every row would fail
        model = row.model or spec.model
        if halt := classify(exc, provider=spec.provider, base_url=spec.base_url, model=model):
            raise Halted(halt) from exc
        if not _expected(exc):
            log.exception("row %s (id %s) failed unexpectedly", row.index + 1, row.id)
        turn = Turn(status=FAILED, error=short_error(exc))
    result = result_of(spec, row, turn, schema, tools)
    result.thread_id = thread.id if thread else ""
    result.latency_s = time.monotonic() - started
    result.attempts = 1 + retrier.retries
    return result, thread


def result_of(
    spec: JobSpec,
    row: Row,
    turn: Turn,
    schema: dict | None,
    tools: ToolLog | None = None,
) -> Result:
    """A turn's row result, checked as every answer is (not empty; matching the structured
    schema) and priced at the tier it was answered at: what a synchronous run and a batch
    line both record. The caller sets where it was asked (thread, latency, attempts)."""
    if turn.status == COMPLETED and not turn.answer.strip():
        # A server that cut the answer off (or sent none) must not pass for an answer.
        turn.status, turn.error = FAILED, "the server sent an empty answer"
    extra: dict[str, str] = {}
    if schema is not None and turn.status == COMPLETED:
        extra, problem = split_answer(turn.answer, schema)
        if problem:
            turn.status, turn.error = FAILED, problem
    errors = [turn.error, *(tools.errors if tools else ())]
    return Result(
        index=row.index,
        status=turn.status,
        answer=turn.answer,
        error=one_line("; ".join(e for e in errors if e), 1000),
        usage=turn.usage,
        model=turn.model,
        run_id=turn.run_id,
        tool_calls=tools.cell() if tools else "",
        extra=extra,
        service_tier=turn.service_tier,
        # Priced at the tier the API reports (a flex request may be answered at another).
        cost_usd=spending.row_cost(spec, row, turn.model, turn.usage, turn.service_tier),
    )


def _resume_thread(thread: Thread | None, row: Row, done: Result) -> Thread | None:
    """Pick the thread up from a stored turn (after a redelivery): its id, and for chat the
    history that askbatch itself keeps."""
    if not done.thread_id:
        return thread
    if thread is None or thread.id != done.thread_id:
        thread = Thread(id=done.thread_id)
    if done.status == COMPLETED:
        thread.history += [
            {"role": "user", "content": row.question},
            {"role": "assistant", "content": done.answer},
        ]
    return thread


def _skipped(row: Row, broken: Result, thread: Thread | None) -> Result:
    return skipped_result(row, broken, thread.id if thread else "")


def skipped_result(row: Row, broken: Result, thread_id: str) -> Result:
    """A later turn not asked because an earlier turn of its thread did not complete."""
    return Result(
        index=row.index,
        status=SKIPPED,
        error=(
            f"not asked: an earlier turn of thread {row.thread!r} (row {broken.index + 1}) "
            f"ended {broken.status}; --continue-on-error asks later turns anyway"
        ),
        thread_id=thread_id,
    )


def _expected(exc: Exception) -> bool:
    import httpx2
    import openai

    return isinstance(exc, openai.OpenAIError | httpx2.TransportError)
