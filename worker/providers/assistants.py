"""The legacy Assistants surface (shut down by OpenAI on 2026-08-26; some servers keep it).

A run is streamed: one HTTP call creates the thread (or adds the turn), runs it and delivers
the answer and the usage. If the stream breaks after the run exists, the run is polled with a
short backoff instead of being created again, so a question is never paid for twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import openai

from worker.models import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    INCOMPLETE,
    JobSpec,
    Row,
    Usage,
)
from worker.providers.base import JobContext, Thread, Turn, too_many_rounds
from worker.retry import Retrier
from worker.tools import ToolLog

TERMINAL = {COMPLETED, FAILED, INCOMPLETE, EXPIRED, CANCELLED, "requires_action"}
CANCEL_TIMEOUT_S = 10.0


def ensure_assistant(client: openai.OpenAI, spec: JobSpec) -> str:
    """The job's assistant: the one given, or one made now from the profile, once per job."""
    if spec.assistant_id:
        return spec.assistant_id
    job = JobContext(spec)
    params: dict[str, Any] = {
        "model": spec.model,
        "name": job.profile.name or "askbatch",
        **job.sampling(),
    }
    if spec.instructions:
        params["instructions"] = spec.instructions
    if job.profile.tools:
        params["tools"] = [t.chat_definition() for t in job.profile.tools]
    if fmt := job.profile.response_format:
        params["response_format"] = {"type": "json_schema", "json_schema": fmt}
    return client.beta.assistants.create(**params).id


def set_up_job(client: openai.OpenAI, spec: JobSpec) -> JobSpec:
    """The job's spec with its one assistant (the registry's `setup`, when a job is made)."""
    return replace(spec, assistant_id=ensure_assistant(client, spec))


class AssistantsProvider:
    def __init__(self, client: openai.OpenAI, spec: JobSpec) -> None:
        self.client = client
        self.spec = spec
        self.job = JobContext(spec)
        self.runs = client.beta.threads.runs

    def open_thread(self, retrier: Retrier) -> Thread:
        # The thread is created by the first run (create_and_run): one call saved per row.
        return Thread()

    def ask(self, thread: Thread, row: Row, retrier: Retrier, tools: ToolLog) -> Turn:
        params: dict[str, Any] = {"assistant_id": self.spec.assistant_id, "stream": True}
        if self.job.profile.max_output_tokens:
            params["max_completion_tokens"] = self.job.profile.max_output_tokens
        if row.model:
            params["model"] = row.model
        if row.instructions:
            params["instructions"] = row.instructions
        message = {"role": "user", "content": row.question}
        if thread.id:
            start = self.runs.create
            params.update(thread_id=thread.id, additional_messages=[message])
        else:
            start = self.client.beta.threads.create_and_run
            params["thread"] = {"messages": [message]}
        seen = _Seen()
        seen.on_run = retrier.on_run
        retrier.call(self._stream, start, seen, **params)
        if seen.run is None:
            return Turn(status=FAILED, error="the server's stream ended without a run")
        thread.id = seen.run.thread_id
        run = self._wait(seen.run, retrier)
        rounds = 0
        while run.status == "requires_action" and self.job.toolbox:
            if rounds == self.spec.max_tool_rounds:
                self._cancel(run)
                return Turn(
                    FAILED, error=too_many_rounds(rounds), model=run.model or "", run_id=run.id
                )
            rounds += 1
            outputs = [
                {
                    "tool_call_id": call.id,
                    "output": self.job.toolbox.call(
                        call.function.name, call.function.arguments, tools
                    ),
                }
                for call in run.required_action.submit_tool_outputs.tool_calls
            ]
            seen.run = None
            retrier.call(
                self._stream,
                self.runs.submit_tool_outputs,
                seen,
                run_id=run.id,
                thread_id=run.thread_id,
                tool_outputs=outputs,
                stream=True,
            )
            run = self._wait(seen.run or run, retrier)
        return self._turn(thread, run, seen.texts, retrier)

    def _stream(self, start: Any, seen: _Seen, timeout: float, **params: Any) -> None:
        with start(timeout=timeout, **params) as stream:
            try:
                for event in stream:
                    name = event.event
                    if name.startswith("thread.run.") and not name.startswith("thread.run.step"):
                        if seen.run is None:
                            seen.on_run(partial(self._cancel_run, event.data))
                        seen.run = event.data
                    elif name == "thread.message.completed":
                        seen.texts.append(_text(event.data))
            except Exception:
                # Once the run exists, a broken stream is recovered by polling, never re-run.
                if seen.run is None:
                    raise

    def _wait(self, run: Any, retrier: Retrier) -> Any:
        delay = 0.05
        while run.status not in TERMINAL:
            left = retrier.remaining()
            if left <= 0:
                return self._cancel(run)
            time.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)
            try:
                run = retrier.call(self.runs.retrieve, run.id, thread_id=run.thread_id)
            except Exception:
                if retrier.remaining() > 0:
                    raise
                return self._cancel(run)
        return run

    def _cancel_run(self, run: Any) -> None:
        """Cancel a run because its job was cancelled; its stream then ends `cancelled`."""
        self.runs.cancel(run.id, thread_id=run.thread_id, timeout=CANCEL_TIMEOUT_S)

    def _cancel(self, run: Any) -> Any:
        # Best effort: the row is recorded as expired either way.
        with contextlib.suppress(openai.OpenAIError):
            self.runs.cancel(run.id, thread_id=run.thread_id, timeout=CANCEL_TIMEOUT_S)
        run.status = "timeout"
        return run

    def _turn(self, thread: Thread, run: Any, texts: list[str], retrier: Retrier) -> Turn:
        turn = Turn(run.status, usage=_usage(run.usage), model=run.model or "", run_id=run.id)
        if run.status == "timeout":
            turn.status = EXPIRED
            turn.error = (
                f"no final status within the row timeout of {self.spec.timeout_s:g}s; "
                "the run was cancelled"
            )
            return turn
        if run.status in (COMPLETED, INCOMPLETE):
            if not texts:
                texts = self._messages(thread, run, retrier)
            turn.answer = "\n\n".join(t for t in texts if t)
        if run.status == INCOMPLETE:
            reason = getattr(run.incomplete_details, "reason", None) or "unknown reason"
            turn.error = f"incomplete: {reason}"
        elif run.status == FAILED:
            err = run.last_error
            turn.error = f"{err.code}: {err.message}" if err else "run failed"
        elif run.status == EXPIRED:
            turn.error = "run expired before it finished"
        elif run.status == CANCELLED:
            turn.error = "run was cancelled"
        elif run.status == "requires_action":
            names = _tool_names(run)
            self._cancel(run)  # leave no run holding the thread
            turn.status = FAILED
            turn.error = (
                f"run requires_action: the model asked for function tool(s) {names}, "
                "but the assistant profile defines no tools to run (--assistant)"
            )
        return turn

    def _messages(self, thread: Thread, run: Any, retrier: Retrier) -> list[str]:
        page = retrier.call(
            self.client.beta.threads.messages.list, thread.id, run_id=run.id, order="asc"
        )
        return [_text(m) for m in page.data if m.role == "assistant"]


class _Seen:
    """What a stream has delivered so far (kept when the stream breaks)."""

    def __init__(self) -> None:
        self.run: Any = None
        self.texts: list[str] = []
        self.on_run: Callable[[Callable[[], None]], None] = lambda cancel: None


def _text(message: Any) -> str:
    return "".join(
        part.text.value for part in message.content or [] if getattr(part, "type", "") == "text"
    )


def _tool_names(run: Any) -> str:
    action = run.required_action
    calls = getattr(getattr(action, "submit_tool_outputs", None), "tool_calls", None) or []
    return ", ".join(sorted({c.function.name for c in calls})) or "(unnamed)"


def _usage(u: Any) -> Usage:
    if u is None:
        return Usage(reported=False)
    return Usage(
        prompt_tokens=u.prompt_tokens or 0,
        completion_tokens=u.completion_tokens or 0,
        total_tokens=u.total_tokens or 0,
    )
