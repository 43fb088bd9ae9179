"""What `run` and `resume` end with: the rows answered, the CSV written, the exit code."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from jobs import judge, pace
from jobs.csvout import write_job
from jobs.errors import Unsent
from jobs.intake import Worksheet
from jobs.progress import ProgressView
from jobs.submit import answer_job
from worker import local, pricing
from worker.fatal import Halt, is_halt
from worker.limits import spending
from worker.models import CANCELLED, COMPLETED, JobSpec, Row
from worker.settings import Settings, mask_url
from worker.store import Store

Say = Callable[[str], None]


def say_for(args: argparse.Namespace) -> Say:
    """Messages to stderr, or nowhere with --quiet."""
    if getattr(args, "quiet", False):
        return lambda msg: None
    return tell


def tell(msg: str) -> None:
    """What is said even with --quiet: errors and the summary a job ends with."""
    print(msg, file=sys.stderr)


def execute(
    settings: Settings,
    store: Store,
    spec: JobSpec,
    sheet: Worksheet,
    groups: Iterator[list[Row]],
    out: Path,
    args: argparse.Namespace,
    say: Say,
) -> int:
    """Answer the rows of `groups` (a new job's, or what a resumed one lacks), wait for every
    row of the job, write the answers CSV; the exit code says how the rows ended."""
    t0 = time.monotonic()
    show = ProgressView(store, spec.job_id, quiet=args.quiet, spec=spec)
    try:
        progress = answer_job(
            settings,
            store,
            spec,
            groups,
            show,
            on_idle=lambda: say(
                f"\nwarning: no worker has picked up a task after "
                f"{settings.idle_warning_s:g}s; is `askbatch worker` running against "
                f"{mask_url(settings.broker_url)}?"
            ),
            sheet=sheet,
            tell=tell,
        )
    except BaseException as exc:
        show.close()  # the terminal gets its cursor back, and the last frame stays
        if not isinstance(exc, KeyboardInterrupt):
            raise
        job = spec.job_id
        if isinstance(exc, Unsent):
            say(
                f"\ninterrupted; {exc.sent_rows:,} rows of job {job} were sent and go on on the "
                f"workers, the others were not sent yet: `askbatch resume {job}` sends them "
                f"(or `askbatch cancel {job}`)"
            )
        elif settings.broker_url:
            say(
                f"\ninterrupted; job {job} goes on on the workers: `askbatch status {job}`, "
                f"`askbatch collect {job}` for the CSV, or `askbatch cancel {job}`"
            )
        elif spec.batch:
            say(
                f"\ninterrupted; the batches out go on at the API: `askbatch resume {job}` "
                "picks them up and asks none of their lines again"
            )
        else:
            say(f"\ninterrupted; the rows answered are kept: `askbatch resume {job}` asks the rest")
        sys.stderr.flush()
        local.stop_all()
        os._exit(130)  # in-flight HTTP requests are abandoned, not waited for
    show.close()
    if is_halt(halt := store.stopped(spec.job_id)):
        return _halted(Halt(*halt), store, spec, sheet, out, args, say)
    judge.judge(settings, store, spec, sheet, say)
    write_job(store, spec, sheet, out, sanitize=not args.no_sanitize)
    if (stop := store.stopped(spec.job_id)) and stop.status == CANCELLED:
        say(f"job {spec.job_id} was cancelled: rows not started are `cancelled`")
    from jobs import report

    # The summary is said even with --quiet: it is what the job came to.
    answers = report.load(
        out,
        pricing.PriceBook.from_json(spec.prices),
        spec.base_url,
        spec.provider,
        spec.grade.get("expected", ""),
    )
    tell(report.text(report.summarize(answers), time.monotonic() - t0))
    if how := pace.bound(pace.reports(store, spec.job_id, within_s=120)):
        tell(how)
    tell(f"answers: {out}")
    if spending.is_cap_stop(store.stopped(spec.job_id)):
        tell(f"the spending cap of ${spec.max_cost} stopped the job: rows not started are skipped")
        return 3
    return 0 if progress.by_status.get(COMPLETED, 0) == spec.total else 1


def _halted(
    halt: Halt,
    store: Store,
    spec: JobSpec,
    sheet: Worksheet,
    out: Path,
    args: argparse.Namespace,
    say: Say,
) -> int:
    """An error no retry can mend stopped the job (worker/fatal): say the cause and the fix,
    and how to go on. The rows not asked stay `pending`; the CSV holds what was answered,
    and is not written when nothing could be (exit 2)."""
    progress = store.progress(spec.job_id)
    answered = progress.by_status.get(COMPLETED, 0)
    left = spec.total - progress.done
    print(f"askbatch: error: {halt.message}", file=sys.stderr)
    if halt.exit_code == 3 or answered:
        write_job(
            store,
            spec,
            sheet,
            out,
            sanitize=not args.no_sanitize,
            pending_reason=f"not asked: {halt.message}",
        )
        say(f"answers so far: {out} ({answered} completed, {left} pending)")
    print(
        f"job {spec.job_id} stopped with {left} of {spec.total} rows not asked; once that is "
        f"fixed, `askbatch resume {spec.job_id}` asks them",
        file=sys.stderr,
    )
    return halt.exit_code
