"""The one interface every provider fills: open a thread, then ask turns in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.models import JobSpec, Row, Usage
from worker.retry import Retrier


@dataclass(slots=True)
class Thread:
    """A conversation. `id` is the provider's id (or askbatch's own, for chat).

    `history` is only used by providers whose server keeps no state (chat).
    """

    id: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Turn:
    """The outcome of one run: a final status word and what came with it."""

    status: str
    answer: str = ""
    error: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    run_id: str = ""


class Provider(Protocol):
    """A way of running a thread. One instance serves a whole job inside one process."""

    def open_thread(self, retrier: Retrier) -> Thread: ...

    def ask(self, thread: Thread, row: Row, retrier: Retrier) -> Turn: ...


def model_for(spec: JobSpec, row: Row) -> str:
    return row.model or spec.model


def instructions_for(spec: JobSpec, row: Row) -> str:
    return row.instructions or spec.instructions
