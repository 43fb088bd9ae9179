"""`askbatch resume JOB`: ask the rows of a job without a result (--retry-failed: its failed
ones too)."""

from __future__ import annotations

import argparse

from jobs import control
from jobs.cli import terminal
from jobs.cli.parser import overrides
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    found = control.locate(Settings.load(overrides(args)), args.job)
    return terminal.resume(found, args, args.retry_failed)
