"""Chat Completions on any OpenAI-compatible server; askbatch keeps the thread's history.

One HTTP call per question (plus one per round of function tools): the whole history travels
with each turn.
"""

from __future__ import annotations

import uuid
from typing import Any

import openai

from worker.models import COMPLETED, FAILED, INCOMPLETE, JobSpec, Row, Usage
from worker.providers.base import JobContext, Thread, Turn, too_many_rounds
from worker.retry import Retrier
from worker.tools import ToolLog

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
        self.job = JobContext(spec)
        self.static = self._static_params()

    def _static_params(self) -> dict[str, Any]:
        profile = self.job.profile
        params: dict[str, Any] = self.job.sampling()
        if profile.max_output_tokens:
            # max_tokens, not max_completion_tokens: what compatible servers understand.
            params["max_tokens"] = profile.max_output_tokens
        if profile.tools:
            params["tools"] = [t.chat_definition() for t in profile.tools]
        if fmt := profile.response_format:
            params["response_format"] = {"type": "json_schema", "json_schema": fmt}
        return params

    def open_thread(self, retrier: Retrier) -> Thread:
        return Thread(id=f"chat_{uuid.uuid4().hex}")

    def ask(self, thread: Thread, row: Row, retrier: Retrier, tools: ToolLog) -> Turn:
        system: list[dict[str, Any]] = []
        if instructions := self.job.instructions(row):
            system.append({"role": "system", "content": instructions})
        turn_messages: list[dict[str, Any]] = [{"role": "user", "content": row.question}]
        usage = Usage()
        rounds = 0
        while True:
            completion = retrier.call(
                self.client.chat.completions.create,
                **self.static,
                model=self.job.model(row),
                messages=[*system, *thread.history, *turn_messages],
            )
            usage.add(_usage(completion.usage))
            choice = completion.choices[0] if completion.choices else None
            message = choice.message if choice else None
            calls = (message.tool_calls or []) if message else []
            if not calls or not self.job.toolbox:
                break
            if rounds == self.job.spec.max_tool_rounds:
                return Turn(
                    FAILED,
                    error=too_many_rounds(rounds),
                    usage=usage,
                    model=completion.model or "",
                    run_id=completion.id or "",
                )
            rounds += 1
            turn_messages.append(
                message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"})
            )
            turn_messages += [
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": self.job.toolbox.call(
                        call.function.name, call.function.arguments, tools
                    ),
                }
                for call in calls
            ]
        answer = (message.content or "") if message else ""
        reason = (choice.finish_reason if choice else None) or "stop"
        status, error = FINISH.get(reason, (FAILED, f"unexpected finish_reason {reason!r}"))
        if status == COMPLETED:
            thread.history += [*turn_messages, {"role": "assistant", "content": answer}]
        return Turn(
            status=status,
            answer=answer,
            error=error,
            usage=usage,
            model=completion.model or self.job.model(row),
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
