"""`askbatch estimate` (and `run --dry-run`): what a worksheet would cost; calls no API."""

from __future__ import annotations

import argparse

from jobs.cli.parser import overrides
from jobs.intake import Worksheet, open_worksheet
from worker import pricing
from worker.settings import Settings


def command(args: argparse.Namespace) -> int:
    settings = Settings.load(overrides(args))
    return show(settings, open_worksheet(args.input, encoding=args.encoding))


def show(settings: Settings, sheet: Worksheet) -> int:
    """Print what the worksheet would cost; nothing is sent, no job is made."""
    # pandas comes with the estimate (half a second): imported only when one is made.
    from jobs import estimate

    est = estimate.for_settings(settings, sheet)
    cap = pricing.parse_usd(settings.max_cost, "--max-cost") if settings.max_cost else None
    print(estimate.text(est, cap))
    return 0
