"""OpenAI's current API: a conversation is the thread, a response is the run.

Two HTTP calls for a one-question thread (conversations.create, responses.create); one more
per follow-up turn, and one more per round of function tools.
Responses are read as plain JSON (see base.read_json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import openai

from worker.models import COMPLETED, FAILED, INCOMPLETE, JobSpec, Row, Usage
from worker.providers.base import JobContext, Thread, Turn, read_json, tier_of, too_many_rounds
from worker.retry import Retrier
from worker.tools import ToolLog

FUNCTION_CALL = ("type", "call_id", "name", "arguments")  # a call's fields, as sent back


class ResponsesProvider:
    def __init__(self, client: openai.OpenAI, spec: JobSpec) -> None:
        self.client = client
        self.job = JobContext(spec)
        self.static = static_params(self.job)

    def open_thread(self, retrier: Retrier) -> Thread:
        conversation = retrier.call(read_json, self.client.conversations.with_raw_response.create)
        return Thread(id=conversation["id"])

    def ask(self, thread: Thread, row: Row, retrier: Retrier, tools: ToolLog) -> Turn:
        # A plain string is the API's shorthand for one user message. The SDK walks a list of
        # message dicts through its type transform, which cost about 1 ms of CPU per question
        # in the benchmark; the string goes through untouched.
        params = request_params(self.job, self.static, row, row.question)
        params["conversation"] = thread.id
        usage = Usage()
        rounds = 0
        limited = False
        while True:
            response = retrier.call(
                read_json, self.client.responses.with_raw_response.create, **params
            )
            turn = turn_from_response(response)
            usage.add(turn.usage)
            calls = [i for i in response.get("output") or () if i.get("type") == "function_call"]
            if not calls or turn.status != COMPLETED or limited:
                break
            # The conversation holds the calls; the next request only carries their outputs.
            limited = rounds == self.job.spec.max_tool_rounds
            if limited:
                # Calls left unanswered would break the conversation's next turn: answer them
                # with an error and ask once more, without tools.
                outputs = [_refused(call["call_id"], rounds) for call in calls]
                params.pop("tools", None)
            else:
                outputs = [
                    {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": self.job.toolbox.call(call["name"], call["arguments"], tools),
                    }
                    for call in calls
                ]
            rounds += 1
            params["input"] = outputs
        if limited:
            turn.status, turn.error = FAILED, too_many_rounds(rounds - 1)
        turn.usage = usage
        return turn


def static_params(job: JobContext) -> dict[str, Any]:
    """Parameters that are the same for every request of the job (synchronous or batch)."""
    profile = job.profile
    params: dict[str, Any] = job.sampling()
    if profile.max_output_tokens:
        params["max_output_tokens"] = profile.max_output_tokens
    if profile.tools:
        # `strict` is a required key of the API's function tool; strict mode would refuse
        # schemas that do not list every property as required, so it is asked for off.
        params["tools"] = [
            {"type": "function", "strict": False, **t.definition()} for t in profile.tools
        ]
    if fmt := profile.response_format:
        params["text"] = {"format": {"type": "json_schema", **fmt}}
    return params


def request_params(
    job: JobContext, static: dict[str, Any], row: Row, input: str | list[dict[str, Any]]
) -> dict[str, Any]:
    """The body of a row's request to /v1/responses, less where its thread lives: what a
    synchronous run sends (with its conversation) and a batch line carries (with the
    thread's earlier turns in `input`)."""
    model = job.model(row)
    params: dict[str, Any] = {**static, **job.per_request(model), "model": model, "input": input}
    if instructions := job.instructions(row):
        # Instructions are not carried over between responses: send them every turn.
        params["instructions"] = instructions
    return params


def _refused(call_id: str, rounds: int) -> dict[str, Any]:
    message = f"tool round limit ({rounds}) reached; answer without tools"
    return {
        "type": "function_call_output",
        "call_id": call_id,
        "output": f'{{"error": "{message}"}}',
    }


def output_text(response: Mapping[str, Any]) -> str:
    """The answer: every output_text part of the message items, in order (what the SDK's
    `Response.output_text` joins)."""
    return "".join(
        part.get("text") or ""
        for item in response.get("output") or ()
        if item.get("type") == "message"
        for part in item.get("content") or ()
        if part.get("type") == "output_text"
    )


def turn_from_response(response: Mapping[str, Any]) -> Turn:
    usage = Usage(reported=False)  # some compatible servers send none
    if u := response.get("usage"):
        usage = Usage(
            prompt_tokens=u.get("input_tokens") or 0,
            completion_tokens=u.get("output_tokens") or 0,
            total_tokens=u.get("total_tokens") or 0,
            cached_tokens=(u.get("input_tokens_details") or {}).get("cached_tokens") or 0,
            reasoning_tokens=(u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
        )
    turn = Turn(
        status=response.get("status") or FAILED,
        answer=output_text(response),
        usage=usage,
        model=response.get("model") or "",
        run_id=response.get("id") or "",
        service_tier=tier_of(response),
    )
    if turn.status == FAILED:
        error = response.get("error")
        turn.error = f"{error.get('code')}: {error.get('message')}" if error else "response failed"
    elif turn.status == INCOMPLETE:
        reason = (response.get("incomplete_details") or {}).get("reason") or "unknown reason"
        turn.error = f"incomplete: {reason}"
    elif turn.status != COMPLETED:
        turn.error = f"response ended with status {turn.status}"
    return turn


class ResponsesLines:
    """The Batch route on /v1/responses (base.BatchLines): a line carries the thread's earlier
    turns in `input`, since `conversation` is not documented inside a batch."""

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
        # A first turn sends the plain string, as a synchronous run does.
        turn = [*history, *user, *items] if history or items else row.question
        return request_params(job, static, row, turn)

    def unreadable(self, body: Mapping[str, Any]) -> str:
        if not isinstance(body.get("output"), list) and not isinstance(body.get("status"), str):
            return "its response.body has neither output nor status"
        return ""

    def turn(self, body: Mapping[str, Any], asked: str) -> Turn:
        return turn_from_response(body)

    def tool_calls(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        if body.get("status") != COMPLETED:
            return []
        return [i for i in body.get("output") or () if i.get("type") == "function_call"]

    def tool_round(
        self, job: JobContext, body: Mapping[str, Any], calls: list[dict[str, Any]], log: ToolLog
    ) -> list[dict[str, Any]]:
        items = [{k: call[k] for k in FUNCTION_CALL} for call in calls]
        for call in calls:
            output = job.toolbox.call(call["name"], call["arguments"], log)
            item = {"type": "function_call_output", "call_id": call["call_id"], "output": output}
            items.append(item)
        return items


LINES = ResponsesLines()
