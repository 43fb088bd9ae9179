"""OpenAI's current API: a conversation is the thread, a response is the run.

Two HTTP calls for a one-question thread (conversations.create, responses.create); one more
per follow-up turn.
"""

from __future__ import annotations

from typing import Any

import openai

from worker.models import COMPLETED, FAILED, INCOMPLETE, JobSpec, Row, Usage
from worker.providers.base import Thread, Turn, instructions_for, model_for
from worker.retry import Retrier


class ResponsesProvider:
    def __init__(self, client: openai.OpenAI, spec: JobSpec) -> None:
        self.client = client
        self.spec = spec

    def open_thread(self, retrier: Retrier) -> Thread:
        conversation = retrier.call(self.client.conversations.create)
        return Thread(id=conversation.id)

    def ask(self, thread: Thread, row: Row, retrier: Retrier) -> Turn:
        params: dict[str, Any] = {
            "model": model_for(self.spec, row),
            "conversation": thread.id,
            "input": [{"role": "user", "content": row.question}],
        }
        if instructions := instructions_for(self.spec, row):
            # Instructions are not carried over between responses: send them every turn.
            params["instructions"] = instructions
        response = retrier.call(self.client.responses.create, **params)
        return turn_from_response(response)


def turn_from_response(response: Any) -> Turn:
    usage = Usage()
    if response.usage is not None:
        u = response.usage
        usage = Usage(
            prompt_tokens=u.input_tokens,
            completion_tokens=u.output_tokens,
            total_tokens=u.total_tokens,
            cached_tokens=getattr(u.input_tokens_details, "cached_tokens", 0) or 0,
            reasoning_tokens=getattr(u.output_tokens_details, "reasoning_tokens", 0) or 0,
        )
    turn = Turn(
        status=response.status or FAILED,
        answer=response.output_text or "",
        usage=usage,
        model=response.model or "",
        run_id=response.id,
    )
    if turn.status == FAILED:
        error = response.error
        turn.error = f"{error.code}: {error.message}" if error else "response failed"
    elif turn.status == INCOMPLETE:
        reason = getattr(response.incomplete_details, "reason", None) or "unknown reason"
        turn.error = f"incomplete: {reason}"
    elif turn.status != COMPLETED:
        turn.error = f"response ended with status {turn.status}"
    return turn
