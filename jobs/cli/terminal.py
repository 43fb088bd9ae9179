"""The terminal's side of `run` and `resume`: what they say where (jobs/job.py's `Ui`), and
how they end on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys

from jobs import control, job
from jobs.job import Run, Ui
from jobs.progress import ProgressView
from worker import local
from worker.models import JobSpec
from worker.store import Store


class Terminal(Ui):
    """Everything to stderr: the job's lines unless `quiet` (-q), the rest always; the
    progress bar (or plain lines) unless `quiet`."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    def warn(self, message: str) -> None:
        print("\n" + message, file=sys.stderr)  # off the progress line

    def tell(self, message: str) -> None:
        print(message, file=sys.stderr)

    def error(self, message: str) -> None:
        print(f"askbatch: error: {message}", file=sys.stderr)

    def progress(self, store: Store, spec: JobSpec) -> ProgressView:
        # sys.stderr as it is now (the default is the one of when jobs.progress was imported).
        return ProgressView(store, spec.job_id, sys.stderr, quiet=self.quiet, spec=spec)


def finish(run: Run, ui: Terminal) -> int:
    """Answer the run; on Ctrl-C (said by the run: how to go on), leave at once with 130."""
    try:
        return run.answer(ui)
    except KeyboardInterrupt:
        sys.stderr.flush()
        local.stop_all()
        os._exit(130)  # in-flight HTTP requests are abandoned, not waited for


def resume(found: control.Job, args: argparse.Namespace, retry_failed: bool) -> int:
    """`resume JOB` and `run --retry-failed`: the job goes on, told on this terminal."""
    ui = Terminal(quiet=args.quiet)
    run = job.resume(
        found,
        ui,
        retry_failed,
        output=args.output,
        overwrite=args.overwrite,
        sanitize=not args.no_sanitize,
    )
    return finish(run, ui)
