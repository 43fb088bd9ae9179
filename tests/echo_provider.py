"""A provider of the tests' own (tests/test_providers.py): one module, answering each question
with itself reversed and keeping its threads' history itself, and one registry entry."""

from __future__ import annotations

import uuid

from worker.models import COMPLETED, JobSpec, Row, Usage
from worker.providers.base import Thread, Turn
from worker.providers.registry import HISTORY, ProviderInfo
from worker.retry import Retrier
from worker.tools import ToolLog

ENTRY = ProviderInfo(
    name="echo",
    summary="answers each question with itself reversed, offline",
    provider="tests.echo_provider:EchoProvider",
    thread=HISTORY,
)


class EchoProvider:
    def __init__(self, client: object, spec: JobSpec) -> None:
        self.spec = spec

    def open_thread(self, retrier: Retrier) -> Thread:
        return Thread(id=f"echo_{uuid.uuid4().hex}")

    def ask(self, thread: Thread, row: Row, retrier: Retrier, tools: ToolLog) -> Turn:
        thread.history.append({"role": "user", "content": row.question})
        turns = len(thread.history)  # the thread's turns so far: this provider keeps them
        return Turn(
            COMPLETED,
            answer=f"{row.question[::-1]} (turn {turns})",
            usage=Usage(prompt_tokens=turns, completion_tokens=1, total_tokens=turns + 1),
            model=row.model or self.spec.model,
            run_id=f"echo_run_{uuid.uuid4().hex[:8]}",
        )
