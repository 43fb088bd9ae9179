"""Chat Completions on any OpenAI-compatible server; askbatch keeps the thread's history.

One HTTP call per question (plus one per round of function tools): the whole history travels
with each turn. Completions are read as plain JSON (see base.read_json).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from worker.models import COMPLETED, FAILED, INCOMPLETE, JobSpec, Row, Usage
from worker.providers import registry
from worker.providers.base import JobContext, Thread, Turn, read_json, tier_of, too_many_rounds
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
        self.static = static_params(self.job)

    def open_thread(self, retrier: Retrier) -> Thread:
        return Thread(id=f"chat_{uuid.uuid4().hex}")

    def ask(self, thread: Thread, row: Row, retrier: Retrier, tools: ToolLog) -> Turn:
        turn_messages: list[dict[str, Any]] = [{"role": "user", "content": row.question}]
        usage = Usage()
        rounds = 0
        while True:
            completion = retrier.call(
                read_json,
                self.client.chat.completions.with_raw_response.create,
                **request_params(self.job, self.static, row, thread.history, turn_messages),
            )
            usage.add(_usage(completion.get("usage")))
            message = _message(completion)
            calls = message.get("tool_calls") or []
            if not calls or not self.job.toolbox:
                break
            if rounds == self.job.spec.max_tool_rounds:
                return Turn(
                    FAILED,
                    error=too_many_rounds(rounds),
                    usage=usage,
                    model=completion.get("model") or "",
                    run_id=completion.get("id") or "",
                    service_tier=tier_of(completion),
                )
            rounds += 1
            turn_messages += tool_round(self.job, message, calls, tools)
        turn = turn_from_completion(completion, self.job.model(row))
        turn.usage = usage
        if turn.status == COMPLETED:
            thread.history += [*turn_messages, {"role": "assistant", "content": turn.answer}]
        return turn


def static_params(job: JobContext) -> dict[str, Any]:
    """Parameters that are the same for every request of the job (synchronous or batch)."""
    profile = job.profile
    params: dict[str, Any] = job.sampling()
    if profile.max_output_tokens:
        # max_tokens, not max_completion_tokens: what compatible servers understand.
        params["max_tokens"] = profile.max_output_tokens
    if profile.tools:
        params["tools"] = [t.chat_definition() for t in profile.tools]
    if fmt := profile.response_format:
        params["response_format"] = {"type": "json_schema", "json_schema": fmt}
    return params


def request_params(
    job: JobContext,
    static: dict[str, Any],
    row: Row,
    history: list[dict[str, Any]],
    turn: list[dict[str, Any]],
) -> dict[str, Any]:
    """The body of a row's request to /v1/chat/completions: instructions, the thread's
    earlier turns (`history`), then this turn's messages. What a synchronous run sends and a
    batch line carries."""
    system: list[dict[str, Any]] = []
    if instructions := job.instructions(row):
        system.append({"role": "system", "content": instructions})
    model = job.model(row)
    # A server of askbatch's own (the local model) keeps its prompt cache per slot: no key.
    keyed = registry.get(job.spec.provider).request_keys
    per_request = job.per_request(model) if keyed else {}
    return {**static, **per_request, "model": model, "messages": [*system, *history, *turn]}


def tool_round(
    job: JobContext, message: Mapping[str, Any], calls: list[dict[str, Any]], log: ToolLog
) -> list[dict[str, Any]]:
    """Run the tool calls of an answer's `message`: the messages the next request adds (the
    assistant's turn as sent back, less the server's extras, then each call's output)."""
    items = [{k: message[k] for k in ("role", "content", "tool_calls") if message.get(k)}]
    for call in calls:
        fn = call["function"]
        output = job.toolbox.call(fn["name"], fn["arguments"], log)
        items.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    return items


def _message(completion: Mapping[str, Any]) -> dict[str, Any]:
    choice = (completion.get("choices") or [None])[0]
    return (choice.get("message") if choice else None) or {}


def turn_from_completion(completion: Mapping[str, Any], asked: str) -> Turn:
    """A completion as a turn: its answer, status by finish_reason, and usage. `asked` is the
    model asked for, for servers that do not say which answered."""
    choice = (completion.get("choices") or [None])[0]
    reason = (choice.get("finish_reason") if choice else None) or "stop"
    status, error = FINISH.get(reason, (FAILED, f"unexpected finish_reason {reason!r}"))
    return Turn(
        status=status,
        answer=_message(completion).get("content") or "",
        error=error,
        usage=_usage(completion.get("usage")),
        model=completion.get("model") or asked,
        run_id=completion.get("id") or "",
        service_tier=tier_of(completion),
    )


def _usage(u: dict[str, Any] | None) -> Usage:
    # Some compatible servers omit usage: the row's token cells are then left empty.
    if not u:
        return Usage(reported=False)
    prompt = u.get("prompt_tokens") or 0
    completion = u.get("completion_tokens") or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.get("total_tokens") or prompt + completion,
        cached_tokens=(u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


class ChatLines:
    """The Batch route on /v1/chat/completions (base.BatchLines): a line is the body a
    synchronous run sends, the thread's history included."""

    static_params = staticmethod(static_params)

    def body(
        self,
        job: JobContext,
        static: dict[str, Any],
        row: Row,
        history: list[dict[str, Any]],
        items: Sequence[dict[str, Any]],
    ) -> dict[str, Any]:
        user = [{"role": "user", "content": row.question}]
        return request_params(job, static, row, history, [*user, *items])

    def unreadable(self, body: Mapping[str, Any]) -> str:
        choices = body.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        if not (isinstance(first, dict) and isinstance(first.get("message"), dict)):
            return "its response.body has no choices[0].message"
        return ""

    def turn(self, body: Mapping[str, Any], asked: str) -> Turn:
        return turn_from_completion(body, asked)

    def tool_calls(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(_message(body).get("tool_calls") or [])

    def tool_round(
        self, job: JobContext, body: Mapping[str, Any], calls: list[dict[str, Any]], log: ToolLog
    ) -> list[dict[str, Any]]:
        return tool_round(job, _message(body), calls, log)


LINES = ChatLines()
