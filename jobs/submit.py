"""A job as a whole after intake: create it, send its tasks, wait for every row.

Embedded mode answers on threads of this process with the function the Celery task wraps;
distributed mode publishes the task to Redis for `askbatch worker` processes. Both then wait on
the same store. `start_job` and `answer_job` are steps of jobs/job.py, the sequence every
front end calls.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

import openai

from jobs import batches, grade
from jobs.embedded import EmbeddedRun
from jobs.errors import Unsent
from jobs.feed import Feeder
from jobs.intake import Worksheet
from jobs.lost import LostTasks, quiet_for
from worker import runtime
from worker.errors import AskbatchError, ConfigError
from worker.fatal import classify, is_halt
from worker.limits import spending
from worker.models import SKIPPED, JobSpec, Result, Row
from worker.profile import Profile, load_profile
from worker.providers import registry
from worker.retry import short_error
from worker.settings import DEFAULT_MODEL, Settings
from worker.store import Progress, Store
from worker.tools import ToolBox

POLL_S = 0.25


def safety_hash(value: str) -> str:
    """The safety identifier as sent: a hash, so that the raw id never leaves this machine."""
    return hashlib.sha256(value.encode()).hexdigest() if value else ""


def new_job_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def load_job_profile(settings: Settings) -> Profile:
    """The assistant profile (or an empty one), with its tools checked to import here, so a
    bad tool reference is a configuration error before anything is sent."""
    if not settings.assistant_profile:
        return Profile()
    profile = load_profile(settings.assistant_profile)
    ToolBox(profile.tools)
    return profile


def create_job(
    settings: Settings,
    sheet: Worksheet,
    store: Store,
    profile: Profile | None = None,
    job_id: str = "",
    profile_from_page: bool = False,
) -> JobSpec:
    """Record the job and its blank rows, after the provider's setup (assistants: the job's
    one assistant). `job_id`: one from `new_job_id`, or a new one.

    Flags and env override the profile, a row's cells both; `profile_from_page`: see JobSpec.
    """
    profile = profile or Profile()
    surface = registry.get(settings.provider)
    spec = JobSpec(
        job_id=job_id or new_job_id(),
        provider=settings.provider,
        model=settings.model or profile.model or DEFAULT_MODEL,
        base_url=settings.base_url,
        instructions=settings.instructions or profile.instructions,
        assistant_id=settings.assistant_id,
        timeout_s=settings.timeout_s,
        request_timeout_s=settings.request_timeout_s,
        max_attempts=settings.max_attempts,
        backoff_s=settings.backoff_s,
        backoff_cap_s=settings.backoff_cap_s,
        total=sheet.n_rows,
        profile=profile.to_json(),
        continue_on_error=settings.continue_on_error,
        max_tool_rounds=settings.max_tool_rounds,
        rpm=settings.rpm,
        tpm=settings.tpm,
        safety_identifier=safety_hash(settings.safety_id),
        service_tier=settings.service_tier,
        batch=settings.batch,
        batch_max_lines=settings.batch_max_lines,
        batch_poll_s=settings.batch_poll_s,
        batch_margin_s=settings.batch_margin_s,
        grade=grade.terms(settings, sheet, profile),
        profile_from_page=profile_from_page,
        **spending.job_terms(settings, profile.max_output_tokens),
    )
    spending.check(spec)
    if profile.check and (spec.batch or not surface.check):
        # The check asks again after each answer: the Batch route cannot wait for that, and
        # some providers cannot either (registry: `check`).
        route = "the Batch route (--batch)" if spec.batch else f"the {spec.provider} provider"
        raise ConfigError(
            f"the profile's [check] cannot be used with {route}: it asks the model again "
            "after each answer; drop one of the two"
        )
    if surface.setup and sheet.n_rows > len(sheet.blank_rows):
        spec = surface.set_up(runtime.client(spec.base_url), spec)
    store.create_job(spec)
    for index in sorted(sheet.blank_rows):
        store.save(
            spec.job_id, Result(index=index, status=SKIPPED, error="blank question; not sent")
        )
    return spec


def start_job(
    settings: Settings,
    sheet: Worksheet,
    store: Store,
    profile: Profile | None = None,
    job_id: str = "",
    profile_from_page: bool = False,
) -> JobSpec:
    """`create_job`, with an API error while setting the job up (making the assistant) told
    as what it is: the halt's message and exit code (worker/fatal), else a ConfigError."""
    try:
        return create_job(settings, sheet, store, profile, job_id, profile_from_page)
    except openai.OpenAIError as exc:
        model = settings.model or (profile or Profile()).model or DEFAULT_MODEL
        if halt := classify(
            exc, provider=settings.provider, base_url=settings.base_url, model=model
        ):
            error = AskbatchError(halt.message)
            error.exit_code = halt.exit_code
            raise error from None
        raise ConfigError(f"could not set up the job: {short_error(exc)}") from None


def task_groups(sheet: Worksheet) -> Iterator[list[Row]]:
    """One task per thread: a lone row, or every row sharing a `thread` value, in input order.

    Unthreaded rows stream straight through; threaded ones are held until the file ends.
    """
    threads: dict[str, list[Row]] = {}
    for row in sheet.rows():
        if row.index in sheet.blank_rows:
            continue
        if row.thread:
            threads.setdefault(row.thread, []).append(row)
        else:
            yield [row]
    yield from threads.values()


def pending_groups(sheet: Worksheet, pending: Iterable[int]) -> Iterator[list[Row]]:
    """The job's tasks that still have a row to ask (a thread's answered turns stay in it:
    the worker passes over them and picks the thread up where it stopped)."""
    wanted = set(pending)
    for rows in task_groups(sheet):
        if any(row.index in wanted for row in rows):
            yield rows


def _payload(rows: list[Row]) -> list[dict]:
    return [r.to_json() for r in rows]


def run_distributed(spec: JobSpec, groups: Iterator[list[Row]]) -> int:
    """Publish one task per thread to the broker; returns how many were sent."""
    from worker import tasks  # Celery: only a distributed job needs it

    app = tasks.app
    sent = 0
    with app.producer_or_acquire() as producer:
        for rows in groups:
            tasks.answer.apply_async(args=(spec.job_id, _payload(rows)), producer=producer)
            sent += 1
    return sent


def wait(
    store: Store,
    spec: JobSpec,
    show: Callable[[Progress], None],
    finished: Callable[[], bool] = lambda: False,
    on_idle: Callable[[], None] | None = None,
    idle_after_s: float = 20.0,
    wake: threading.Event | None = None,
    watch: Callable[[Progress], object] | None = None,
) -> Progress:
    """Poll the store until every row has a result, the job is halted with no row left in
    flight (worker/fatal), or the local pool has ended, which sets `wake`: then at once
    rather than at the next poll. `watch` sees every poll's progress (jobs/lost.py)."""
    t0 = time.monotonic()
    warned = False
    while True:
        progress = store.progress(spec.job_id)
        show(progress)
        if progress.done >= spec.total:
            return progress
        if finished():
            return store.progress(spec.job_id)
        if is_halt(store.stopped(spec.job_id)) and store.in_flight(spec.job_id) == 0:
            return store.progress(spec.job_id)
        if (
            on_idle
            and not warned
            and progress.started == 0
            and time.monotonic() - t0 > idle_after_s
        ):
            on_idle()
            warned = True
        if watch is not None:
            watch(progress)
        if wake is not None:
            wake.wait(POLL_S)
        else:
            time.sleep(POLL_S)


def answer_job(
    settings: Settings,
    store: Store,
    spec: JobSpec,
    groups: Iterator[list[Row]],
    show: Callable[[Progress], None],
    on_idle: Callable[[], None] | None = None,
    sheet: Worksheet | None = None,
    tell: Callable[[str], None] | None = None,
) -> Progress:
    """Answer the rows of `groups` (a new job's, or what a resumed one lacks) and wait until
    every row of the job has a result, or the job stopped: on workers when the settings name
    a broker (`on_idle` is called if none has picked up a task after idle_warning_s), else
    on `settings.concurrency` threads of this process. With the job's `sheet`, rows the broker
    lost are sent again (jobs/lost.py), and `tell` says so."""
    if spec.batch:
        return _answer_batches(settings, store, spec, show, on_idle)
    if settings.broker_url:
        return _answer_on_workers(settings, store, spec, groups, show, on_idle, sheet, tell)
    embedded = EmbeddedRun(
        spec,
        groups,
        settings.concurrency,
        stopped=lambda: store.stopped(spec.job_id) is not None,
    )
    wait(store, spec, show, finished=embedded.finished, wake=embedded.ended)
    finish_stopped(store, spec)
    return store.progress(spec.job_id)


def _answer_on_workers(
    settings: Settings,
    store: Store,
    spec: JobSpec,
    groups: Iterator[list[Row]],
    show: Callable[[Progress], None],
    on_idle: Callable[[], None] | None,
    sheet: Worksheet | None,
    tell: Callable[[str], None] | None,
) -> Progress:
    """Send the tasks a window ahead of the answers (jobs/feed.py) and wait; once all are
    sent, look for any the broker lost (jobs/lost.py)."""
    feeder = Feeder(
        groups,
        lambda tasks: run_distributed(spec, tasks),
        settings.queue_ahead,
        store.progress(spec.job_id).done,
    )
    lost = None
    if sheet is not None:
        lost = LostTasks(
            settings.broker_url,
            store,
            spec.job_id,
            spec.total,
            lambda missing: pending_groups(sheet, missing),
            lambda again: run_distributed(spec, again),
            quiet_for(settings.visibility_timeout_s),
            **({"tell": tell} if tell else {}),
        )

    def watch(progress: Progress) -> None:
        if not feeder.exhausted:
            stop = store.stopped(spec.job_id)
            if stop is None:
                feeder.top_up(progress)
            elif not is_halt(stop):  # cancelled, or the spending cap: send no more, and
                feeder.exhausted = True  # the rows never sent take the stop's status
                finish_stopped(store, spec)
        elif lost is not None:
            lost.check(progress)

    watch(store.progress(spec.job_id))
    try:
        return wait(
            store,
            spec,
            show,
            on_idle=on_idle,
            idle_after_s=settings.idle_warning_s,
            watch=watch,
        )
    except KeyboardInterrupt:
        if feeder.exhausted:
            raise
        raise Unsent(feeder.sent_rows) from None


def _answer_batches(
    settings: Settings,
    store: Store,
    spec: JobSpec,
    show: Callable[[Progress], None],
    on_idle: Callable[[], None] | None,
) -> Progress:
    """A --batch job: this process looks at its batches (embedded), or the workers do."""
    if not settings.broker_url:
        return batches.run_here(store, spec, show)
    batches.hand_to_workers(store, spec)
    shown = batches.with_note(store, spec, show)
    # A --batch job's rows are never claimed, so "started" stays 0: the warning is for a job
    # no worker has looked at yet (no batch recorded).
    idle = on_idle and (lambda: None if batches.looked_at(store, spec) else on_idle())
    return wait(store, spec, shown, on_idle=idle, idle_after_s=settings.idle_warning_s)


def finish_stopped(store: Store, spec: JobSpec) -> None:
    """After a stopped job's local pool has drained, the rows it never fed get the stop's
    status: `cancelled` after a cancel, `skipped` at the spending cap."""
    stop = store.stopped(spec.job_id)
    if stop and not is_halt(stop):  # a halted job's rows stay pending, to be resumed
        store.mark_unstarted(spec.job_id, store.missing(spec.job_id, spec.total), *stop)
