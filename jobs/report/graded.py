"""The HTML report's part for a graded file: the score, right and wrong by model, by thread and
by any column named with `--by`, and the wrong rows with question, key and answer."""

from __future__ import annotations

from html import escape

from jobs.report import charts
from jobs.report.scores import Score, snippet

RIGHT, WRONG = "#59a14f", "#e15759"


def section(score: Score | None) -> str:
    if score is None:
        return ""
    figures = "".join(
        f"<figure><figcaption>Right and wrong by {escape(name)}</figcaption>"
        f"{_bars(groups, name)}</figure>"
        for name, groups in score.by.items()
    )
    cost = "" if score.cost is None else f", the judge's requests ${score.cost:.6f}"
    return (
        f"<h3>Graded against the key</h3><p class='note'>{escape(score.line())}"
        f"{escape(cost)}</p><div class='grid'>{figures}</div>"
        f"<h3>Wrong rows</h3>{_wrong(score)}"
    )


def _bars(groups: list[tuple[str, int, int]], name: str) -> str:
    """One bar per value: the share right, with right of graded written at its end."""
    items = []
    for value, right, wrong in groups:
        graded = right + wrong
        share = 100 * right / graded if graded else 0.0
        colour = RIGHT if wrong == 0 else WRONG if right == 0 else "#f28e2b"
        items.append((value, share, f"{right} of {graded} right ({share:.0f} %)", colour))
    return charts.hbars(items, f"right and wrong by {name}", lambda v, step: f"{v:.0f} %")


def _wrong(score: Score) -> str:
    if not len(score.wrong):
        return "<p>none</p>"
    body = "".join(
        f"<tr><td class='n'>{r.row}</td><td>{escape(str(r.label))}</td>"
        f"<td>{escape(snippet(r.question, 120))}</td><td>{escape(snippet(r.key, 120))}</td>"
        f"<td>{escape(snippet(r.answer, 120, tail=True))}</td></tr>"
        for r in score.wrong.itertuples()
    )
    return (
        "<table><tr><th class='n'>row</th><th>id</th><th>question</th><th>key</th>"
        f"<th>answer</th></tr>{body}</table>"
    )
