"""`askbatch status JOB`: a job's rows by status, its tokens and cost so far, and its state."""

from __future__ import annotations

import argparse

from jobs import control
from jobs.cli.parser import overrides
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(overrides(args)), args.job)
    print(control.status_report(job))
    return 0
