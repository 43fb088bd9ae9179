"""Usage and cost of answers CSVs: `answers.py` reads one back as a lean frame, `summary.py`
the numbers and the text, `html.py` the page, `charts.py` its inline SVG charts."""

from jobs.report.summary import (
    Answers,
    Summary,
    combine,
    load,
    rows,
    summarize,
    summarize_files,
    text,
    usd,
)

__all__ = [
    "Answers",
    "Summary",
    "combine",
    "load",
    "rows",
    "summarize",
    "summarize_files",
    "text",
    "usd",
]
