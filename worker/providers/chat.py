"""Chat Completions on any OpenAI-compatible server; askbatch keeps the thread's history.

One HTTP call per question: the whole history travels with each turn.
"""

from __future__ import annotations

import uuid
from typing import Any

import openai

from worker.models import COMPLETED, FAILED, INCOMPLETE, JobSpec, Row, Usage
from worker.providers.base import Thread, Turn, instructions_for, model_for
from worker.retry import Retrier

# finish_reason → (row status, error); anything unknown is reported, not hidden.
FINISH = {
    "stop": (COMPLETED, ""),
    "length": (INCOMPLETE, "incomplete: max_tokens"),
    "content_filter": (FAILED, "the answer was withheld by the server's content filter"),
    "tool_calls": (FAILED, "the model asked for a tool call; no tools are configured"),
    "function_call": (FAILED, "the model asked for a tool call; no tools are configured"),
}


class ChatProvider:
    def __init__(self, client: openai.OpenAI, spec: JobSpec) -> None:
        self.client = client
        self.spec = spec

    def open_thread(self, retrier: Retrier) -> Thread:
        return Thread(id=f"chat_{uuid.uuid4().hex}")

    def ask(self, thread: Thread, row: Row, retrier: Retrier) -> Turn:
        messages: list[dict[str, Any]] = []
        if instructions := instructions_for(self.spec, row):
            messages.append({"role": "system", "content": instructions})
        user = {"role": "user", "content": row.question}
        messages += [*thread.history, user]
        completion = retrier.call(
            self.client.chat.completions.create,
            model=model_for(self.spec, row),
            messages=messages,
        )
        choice = completion.choices[0] if completion.choices else None
        answer = (choice.message.content or "") if choice else ""
        reason = (choice.finish_reason if choice else None) or "stop"
        status, error = FINISH.get(reason, (FAILED, f"unexpected finish_reason {reason!r}"))
        if status == COMPLETED:
            thread.history += [user, {"role": "assistant", "content": answer}]
        return Turn(
            status=status,
            answer=answer,
            error=error,
            usage=_usage(completion.usage),
            model=completion.model or model_for(self.spec, row),
            run_id=completion.id or "",
        )


def _usage(u: Any) -> Usage:
    # Some compatible servers omit usage; zero is then the honest "not reported".
    if u is None:
        return Usage()
    prompt = u.prompt_tokens or 0
    completion = u.completion_tokens or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.total_tokens or prompt + completion,
        cached_tokens=getattr(u.prompt_tokens_details, "cached_tokens", 0) or 0,
        reasoning_tokens=getattr(u.completion_tokens_details, "reasoning_tokens", 0) or 0,
    )
