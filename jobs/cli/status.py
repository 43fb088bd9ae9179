"""`askbatch status JOB`: a job's rows by status, its tokens and cost so far, and its state;
with --watch, the same live view `run` shows, until the job ends or Ctrl-C."""

from __future__ import annotations

import argparse
import sys

from jobs import control
from jobs.cli.parser import overrides
from jobs.progress import ProgressView, follow
from worker.errors import ConfigError
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(overrides(args)), args.job)
    if args.watch:
        watch(job, args.interval)
    elif args.interval is not None:
        raise ConfigError("--interval goes with --watch")
    print(control.status_report(job))
    return 0


def watch(job: control.Job, interval: float | None) -> None:
    """Follow the job on stdout until it is over; Ctrl-C ends the watching, not the job."""
    if interval is not None and not 0.05 <= interval <= 3600:
        raise ConfigError(f"--interval {interval:g}: give seconds between 0.05 and 3600")
    view = ProgressView(job.store, job.id, stream=sys.stdout, every_s=interval, spec=job.spec)
    print(f"job {job.id} ({job.where}): {job.spec.provider} provider, {job.spec.model}")
    try:
        snap = follow(view)
    except KeyboardInterrupt:
        view.close()
        print(f"stopped watching; the job goes on: `askbatch status {job.id} --watch`")
        return
    view.close()
    print(f"job {job.id}: {snap.state}" + (f" ({snap.stop_reason})" if snap.stop_reason else ""))
