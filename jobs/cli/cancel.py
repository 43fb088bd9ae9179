"""`askbatch cancel JOB`: no new row of the job starts; rows not started end `cancelled`."""

from __future__ import annotations

import argparse

from jobs import control
from jobs.cli.parser import overrides
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    job = control.locate(Settings.load(overrides(args)), args.job)
    print(control.cancel(job))
    return 0
