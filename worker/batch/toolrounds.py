"""Function tools through the Batch API, in rounds, as a thread's turns are.

A line whose answer asks for tool calls is not the row's result: the tools run when the batch
is read, and the row goes into the next round with the calls and their outputs after its
question.

What the row has gathered so far (the items to send again, the usage of every round, the
tools called) is kept with the row in the store, as `continuing`, until its final answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.models import Usage
from worker.providers.base import BatchLines, JobContext
from worker.tools import ToolLog

CONTINUING = "continuing"  # the key of a row's stored JSON that holds its rounds so far


@dataclass(slots=True)
class Continuing:
    items: list[dict[str, Any]] = field(default_factory=list)  # sent after the question
    usage: Usage = field(default_factory=Usage)
    calls: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rounds: int = 0
    # The attempt whose answer asked for these calls: reading that line again (a look that
    # died before it finished) must not run the tools twice.
    after: int = 0

    def to_json(self) -> dict[str, Any]:
        u = self.usage
        usage = {name: getattr(u, name) for name in Usage.__slots__}
        return {
            "items": self.items,
            "usage": usage,
            "calls": self.calls,
            "errors": self.errors,
            "rounds": self.rounds,
            "after": self.after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Continuing:
        data = data or {}
        return cls(
            items=list(data.get("items") or []),
            usage=Usage(**(data.get("usage") or {})),
            calls=dict(data.get("calls") or {}),
            errors=list(data.get("errors") or []),
            rounds=int(data.get("rounds") or 0),
            after=int(data.get("after") or 0),
        )

    def log(self) -> ToolLog:
        return ToolLog(calls=Counter(self.calls), errors=list(self.errors))


def run_tools(
    job: JobContext,
    wire: BatchLines,
    body: dict[str, Any],
    calls: list[dict[str, Any]],
    so_far: Continuing,
    usage: Usage,
    attempt: int,
) -> Continuing:
    """Run the calls; returns what the row's next line carries: the items so far, the calls
    as the model made them and their outputs (in the provider's own form: `wire`), and the
    usage of every round."""
    log = so_far.log()
    items = [*so_far.items, *wire.tool_round(job, body, calls, log)]
    total = Usage(**{name: getattr(so_far.usage, name) for name in Usage.__slots__})
    total.add(usage)
    return Continuing(items, total, dict(log.calls), log.errors, so_far.rounds + 1, attempt)
