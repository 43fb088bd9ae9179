"""A job from its worksheet to its answers file: the one sequence every front end calls to
start, resume, retry the failed rows of, or cancel a job — embedded or distributed, live or --batch.

`askbatch run` / `resume` / `cancel` (jobs/cli), the page's actions (jobs/web/launch.py) and
scripts/sample (through `askbatch run`) parse their input, call these, and show what they are
told through a `Ui`; none of them assembles the steps. `start` and `resume` do everything up
to the first row — open and check the worksheet and the output path, load the profile, start
a local server (registry: `local_server`), configure the process and reach the store, create
and record the job, prepare its route (the Batch route keeps its rows with the job) — and
return a `Run` that holds the job; `Run.answer` asks the rows, writes the answers file and
says what the job came to, with the exit code (jobs/cli/__init__.py lists them).

Where the next steps land, once for every front end: another worksheet format in `start`'s
opening of the worksheet (and `control.write_answers`, the one writer of answers files); a
cache of answers in `Run.answer`, before `answer_job` is given the rows; grading in
`control.write_answers`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobs import batches, control, judge, pace
from jobs.csvout import check_output_path, default_output_path
from jobs.errors import Unsent
from jobs.intake import Worksheet, open_worksheet
from jobs.record import check_worksheet, record_for
from jobs.submit import (
    answer_job,
    load_job_profile,
    new_job_id,
    pending_groups,
    start_job,
    task_groups,
)
from worker import local, pricing
from worker.errors import ConfigError
from worker.fatal import Halt, is_halt
from worker.limits import spending
from worker.models import CANCELLED, COMPLETED, JobSpec, Row
from worker.profile import Profile
from worker.providers import registry
from worker.settings import Settings, mask_url
from worker.store import Progress, Store


class View(Protocol):
    """A progress display: called with each look at the job, closed when it ends."""

    def __call__(self, progress: Progress) -> object: ...

    def close(self) -> None: ...


class Unseen:
    """The view of a front end that shows no progress as it goes (the page polls instead)."""

    def __call__(self, progress: Progress) -> None:
        return None

    def close(self) -> None:
        return None


class Ui:
    """How a front end shows a job: everything the use case says goes through these. The
    defaults show nothing; a front end overrides what it shows."""

    # Whether the end summary (a report read from the answers file) is made for `tell`.
    summarize = True

    def say(self, message: str) -> None:
        """A line about the job as it goes: what it is, what it does (`-q` drops these)."""

    def warn(self, message: str) -> None:
        """Something to act on, while the job runs or as it stops (said even with `-q`)."""

    def tell(self, message: str) -> None:
        """What the job came to: the summary, the answers file, how to go on (even `-q`)."""

    def error(self, message: str) -> None:
        """Why the job stopped: an error no retry mends (worker/fatal), cause and fix."""

    def progress(self, store: Store, spec: JobSpec) -> View:
        """The job's progress display, for the time its rows are answered."""
        return Unseen()


@dataclass
class Start:
    """What a front end asks for to start a job."""

    worksheet: Path | Worksheet  # a file to open, or one the front end opened (an upload)
    settings: Settings  # with the front end's choices: flags, or the page's form
    # The answers file: a path, a name made from the job's id, or (None) <input>.answers.csv.
    output: Path | Callable[[str], Path] | None = None
    encoding: str | None = None
    overwrite: bool = False
    sanitize: bool = True
    # The profile, as the front end read it (None: `settings.assistant_profile` loaded here);
    # `profile_from_page`: uploaded to the page, so that workers allow only their UI tools.
    profile: Profile | None = None
    profile_from_page: bool = False


@dataclass
class Run:
    """A job ready to be answered, held by this process (no other one runs it) until
    `answer` returns, or `release` for a front end that does not answer it after all."""

    job: control.Job
    sheet: Worksheet
    groups: Iterator[list[Row]]  # the rows to ask, one thread of rows at a time
    out: Path
    sanitize: bool
    hold: contextlib.ExitStack
    about: str  # the line said when it was made ready

    def release(self) -> None:
        self.hold.close()

    def answer(self, ui: Ui) -> int:
        """Ask the rows, wait until every row of the job has a result (or the job stopped),
        write the answers file and say what the job came to; returns the exit code. Ctrl-C
        says how to go on, then goes on up (KeyboardInterrupt)."""
        job, t0 = self.job, time.monotonic()
        with self.hold:
            view = ui.progress(job.store, job.spec)
            try:
                progress = answer_job(
                    job.settings,
                    job.store,
                    job.spec,
                    self.groups,
                    view,
                    on_idle=lambda: ui.warn(_idle(job.settings)),
                    sheet=self.sheet,
                    tell=ui.warn,
                )
            except BaseException as exc:
                view.close()  # a terminal gets its cursor back, and the last frame stays
                if isinstance(exc, KeyboardInterrupt):
                    ui.warn(interrupted(job, exc))
                raise
            view.close()
            if is_halt(halt := job.store.stopped(job.id)):
                return self._halted(Halt(*halt), ui)
            judge.judge(job.settings, job.store, job.spec, self.sheet, ui.say)
            control.write_answers(job, self.sheet, self.out, self.sanitize)
            if (stop := job.store.stopped(job.id)) and stop.status == CANCELLED:
                ui.say(f"job {job.id} was cancelled: rows not started are `cancelled`")
            if ui.summarize:
                ui.tell(summary(job, self.out, time.monotonic() - t0))
            ui.tell(going_on(job))
            ui.tell(f"answers: {self.out}")
            if spending.is_cap_stop(job.store.stopped(job.id)):
                cap = job.spec.max_cost
                ui.tell(f"the spending cap of ${cap} stopped the job: rows not started are skipped")
                return 3
            return 0 if progress.by_status.get(COMPLETED, 0) == job.spec.total else 1

    def _halted(self, halt: Halt, ui: Ui) -> int:
        """An error no retry can mend stopped the job (worker/fatal): say the cause and the
        fix, and how to go on. The rows not asked stay `pending`; the answers file holds what
        was answered, and is not written when nothing could be (exit 2)."""
        job = self.job
        progress = job.store.progress(job.id)
        answered = progress.by_status.get(COMPLETED, 0)
        left = job.spec.total - progress.done
        ui.error(halt.message)
        if halt.exit_code == 3 or answered:
            control.write_answers(job, self.sheet, self.out, self.sanitize)
            ui.say(f"answers so far: {self.out} ({answered} completed, {left} pending)")
        ui.tell(
            f"job {job.id} stopped with {left} of {job.spec.total} rows not asked; once that is "
            f"fixed, `askbatch resume {job.id}` asks them"
        )
        return halt.exit_code


def start(request: Start, ui: Ui, store: Store | None = None) -> Run:
    """Everything before a new job's first row; returns the job, held, to be answered.

    `store`: where the front end's process runs its jobs (the page's own); without one, this
    process is configured for the job's settings (a command runs one job)."""
    sheet = request.worksheet
    if not isinstance(sheet, Worksheet):
        sheet = open_worksheet(sheet, encoding=request.encoding)
    settings = request.settings
    job_id = new_job_id()
    out = _output(request.output, sheet, job_id)
    check_output_path(out, sheet.path, request.overwrite)
    settings.require_credentials()
    profile = request.profile if request.profile is not None else load_job_profile(settings)
    if registry.get(settings.provider).local_server:
        settings = local.prepare_run(settings, say=ui.say)
        profile = local.cap_answers(profile, settings)
    store = store or control.use(settings)
    if sheet.encoding.replace("-sig", "") != "utf-8":
        ui.say(f"{sheet.path}: read as {sheet.encoding}")
    record = record_for(sheet, out, control.mode_of(settings))
    spec = start_job(settings, sheet, store, profile, job_id, request.profile_from_page)
    if spec.batch:  # the Batch route builds every round's lines from the rows kept here
        batches.prepare(store, spec, task_groups(sheet))
    about = (
        f"job {spec.job_id}: {spec.total} rows, {spec.provider} provider, {spec.model}, "
        + _mode(settings, spec.batch)
    )
    ui.say(about)
    if spec.max_cost:
        held = f"{spec.answer_tokens:,} answer tokens"
        ui.say(f"spending cap ${spec.max_cost}; each row in flight holds its prompt + {held}")
    control.remember(store, spec, record)
    job = control.Job(spec.job_id, settings, store, spec, record)
    groups = task_groups(sheet)
    return Run(job, sheet, groups, out, request.sanitize, _held(store, job.id), about)


def resume(
    job: control.Job,
    ui: Ui,
    retry_failed: bool = False,
    output: Path | None = None,
    overwrite: bool = False,
    sanitize: bool = True,
) -> Run:
    """Everything before a job goes on: its worksheet checked unchanged, its rows without a
    result (with `retry_failed`, its failed, expired and cancelled ones too) made ready to
    ask, its route prepared again if the run that made it stopped first; returns it, held."""
    sheet = check_worksheet(job.record, job.id)
    out = output or Path(job.record.output)
    check_output_path(out, sheet.path, overwrite)
    job.settings.with_(base_url=job.spec.base_url).require_credentials()
    if registry.get(job.spec.provider).local_server and not job.settings.broker_url:
        raise ConfigError(
            f"job {job.id} ran on a local model server that is gone; resuming --provider "
            f"{job.spec.provider} jobs is not supported yet: run the worksheet again"
        )
    hold = _held(job.store, job.id)
    try:
        pending, dropped = control.prepare_resume(job, sheet, retry_failed)
        if job.spec.batch:
            batches.ensure_prepared(job.store, job.spec, task_groups(sheet))
    except BaseException:
        hold.close()
        raise
    again = f" ({dropped} of them ended failed, expired or cancelled before)" if dropped else ""
    about = f"job {job.id} ({job.where}): {len(pending)} of {job.spec.total} rows to ask{again}"
    ui.say(about)
    return Run(job, sheet, pending_groups(sheet, pending), out, sanitize, hold, about)


def latest(settings: Settings, worksheet: Path) -> control.Job:
    """The newest job of this worksheet (`run --retry-failed`)."""
    job_id = control.latest_job(settings, worksheet)
    if job_id is None:
        where = settings.state_dir + (
            f" or {mask_url(settings.broker_url)}" if settings.broker_url else ""
        )
        raise ConfigError(
            f"{worksheet}: no earlier job of this worksheet in {where}; "
            "run it without --retry-failed first"
        )
    return control.locate(settings, job_id)


def cancel(job: control.Job) -> str:
    """No row of the job starts from now on; rows nobody is answering end `cancelled` (a
    --batch job's batches are cancelled at the API). Returns what was done, in a line."""
    return control.cancel(job)


def summary(job: control.Job, out: Path, elapsed_s: float) -> str:
    """The end summary: the answers file's usage and cost report, and the pace it kept."""
    # pandas comes with the report (half a second): imported only when one is made.
    from jobs import report

    spec = job.spec
    prices = pricing.PriceBook.from_json(spec.prices)
    answers = report.load(out, prices, spec.base_url, spec.provider, spec.grade.get("expected", ""))
    text = report.text(report.summarize(answers), elapsed_s)
    if how := pace.bound(pace.reports(job.store, job.id, within_s=120)):
        text += "\n" + how
    return text


def going_on(job: control.Job) -> str:
    """The line that names the job at its end, so a script (`-q`) can go back to it."""
    return (
        f"job {job.id}: `askbatch resume {job.id} --retry-failed` asks again the rows that did "
        "not complete"
    )


def interrupted(job: control.Job, exc: KeyboardInterrupt) -> str:
    """What happens to a job whose run was interrupted, and how to go on with it."""
    if isinstance(exc, Unsent):
        return (
            f"interrupted; {exc.sent_rows:,} rows of job {job.id} were sent and go on on the "
            f"workers, the others were not sent yet: `askbatch resume {job.id}` sends them "
            f"(or `askbatch cancel {job.id}`)"
        )
    if job.settings.broker_url:
        return (
            f"interrupted; job {job.id} goes on on the workers: `askbatch status {job.id}`, "
            f"`askbatch collect {job.id}` for the CSV, or `askbatch cancel {job.id}`"
        )
    if job.spec.batch:
        return (
            f"interrupted; the batches out go on at the API: `askbatch resume {job.id}` "
            "picks them up and asks none of their lines again"
        )
    return f"interrupted; the rows answered are kept: `askbatch resume {job.id}` asks the rest"


def _idle(settings: Settings) -> str:
    return (
        f"warning: no worker has picked up a task after {settings.idle_warning_s:g}s; is "
        f"`askbatch worker` running against {mask_url(settings.broker_url)}?"
    )


def _mode(settings: Settings, batch: bool) -> str:
    if settings.broker_url:
        mode = f"on workers via {mask_url(settings.broker_url)}"
    else:
        mode = f"embedded, {settings.concurrency} at a time"
    return mode + (", through the Batch API (answers within 24 hours)" if batch else "")


def _output(output: Path | Callable[[str], Path] | None, sheet: Worksheet, job_id: str) -> Path:
    if output is None:
        return default_output_path(sheet.path)
    return output(job_id) if callable(output) else Path(output)


def _held(store: Store, job_id: str) -> contextlib.ExitStack:
    """The job held by this process until the stack is closed; JobBusy if another holds it."""
    hold = contextlib.ExitStack()
    hold.enter_context(store.hold(job_id))
    return hold
