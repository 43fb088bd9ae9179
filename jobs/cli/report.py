"""`askbatch report`: the usage and cost summary of answers CSVs, and the HTML page."""

from __future__ import annotations

import argparse
import sys

from jobs.csvout import check_output_path
from worker import pricing


def command(args: argparse.Namespace) -> int:
    # pandas comes with the report (half a second): imported only when one is made.
    from jobs import report
    from jobs.report import html

    prices = pricing.load_prices(args.prices) if args.prices else pricing.NO_PRICES
    if args.html is not None:
        check_output_path(args.html, args.inputs[0], args.overwrite)
    regrade = (
        {"expected": args.expected, "field": args.grade_field or ""} if args.expected else None
    )
    parts, total = report.summarize_files(
        args.inputs, prices, args.base_url or "", regrade=regrade, by=args.by
    )
    blocks = [(f"== {s.name} ==\n" if total else "") + report.text(s) for _, s in parts]
    if total is not None:
        blocks.append(f"== {total.name} ==\n" + report.text(total))
    print("\n\n".join(blocks))
    if args.html is not None:
        html.write(args.html, html.page(parts, total))
        print(f"HTML report: {args.html}", file=sys.stderr)
    return 0
