"""`askbatch cancel JOB`: no new row of the job starts; rows not started end `cancelled`."""

from __future__ import annotations

import argparse

from jobs import control, job
from jobs.cli.parser import overrides
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    print(job.cancel(control.locate(Settings.load(overrides(args)), args.job)))
    return 0
