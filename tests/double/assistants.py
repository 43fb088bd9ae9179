"""The legacy Assistants API (beta): assistants, threads, messages and runs.

Runs advance lazily: every request that touches a run moves it on according to the
clock, so no background task is needed; a streaming request waits on the run itself.
"""

import asyncio
import contextlib
import json
import time

from aiohttp import web

from . import expect, tools
from .core import (
    ApiError,
    Double,
    api,
    content_text,
    dialogue,
    json_body,
    json_response,
    list_page,
    sse_response,
)
from .faults import parse_markers
from .state import (
    FUNCTION_CALL_OUTPUT,
    Item,
    Run,
    Thread,
    message_text,
    new_id,
    now_s,
    text_message,
)

CANCELLABLE = frozenset({"queued", "in_progress", "requires_action"})
# Marker outcome -> run status; markers not listed keep their name.
MARKER_STATUS = {"fail": "failed", None: "completed"}


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, f"No {kind} found with id '{ident}'.")


def get_assistant(double: Double, assistant_id: object) -> dict:
    assistant = double.store.assistants.get(assistant_id)  # type: ignore[arg-type]
    if assistant is None:
        raise _not_found("assistant", str(assistant_id))
    return assistant


def get_thread(double: Double, request: web.Request) -> Thread:
    thread_id = request.match_info["thread_id"]
    thread = double.store.threads.get(thread_id)
    if thread is None:
        raise _not_found("thread", thread_id)
    return thread


def get_run(double: Double, request: web.Request) -> Run:
    run_id = request.match_info["run_id"]
    run = double.store.runs.get(run_id)
    if run is None or run.thread.id != request.match_info["thread_id"]:
        raise _not_found("run", run_id)
    return run


def parse_message(thread_id: str, message: object) -> dict:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise ApiError(400, "A message needs a role of 'user' or 'assistant'.", param="role")
    text = content_text(message.get("content"))
    return text_message(thread_id, message["role"], text, metadata=message.get("metadata"))


# --- run lifecycle ---


def start(run: Run) -> None:
    run.obj["status"] = "in_progress"
    run.obj["started_at"] = run.obj["started_at"] or now_s()


def advance(double: Double, run: Run) -> None:
    """Move a run on to where the clock says it is."""
    status = run.status
    if status in ("queued", "in_progress"):
        if run.outcome != "never" and time.monotonic() >= run.deadline:
            finish(double, run, run.outcome)
        elif status == "queued":
            start(run)
    elif status == "cancelling":
        finish(double, run, "cancelled")


def finish(double: Double, run: Run, status: str) -> None:
    """Put the run in its outcome state: terminal, or requires_action."""
    obj = run.obj
    stamp = now_s()
    obj["started_at"] = obj["started_at"] or stamp
    obj["status"] = status
    if status == "requires_action":
        if run.planned:  # function tools marked in the question
            run.calls = tools.new_calls(run.planned)
            prompt, completion = expect.tool_round_usage(
                context(run), [call.text for call in run.calls]
            )
            run.spent = (run.spent[0] + prompt, run.spent[1] + completion)
            calls = [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.text},
                }
                for call in run.calls
            ]
        else:  # [[requires_action]]: one fixed call, whatever the tools
            calls = [
                {
                    "id": new_id("call"),
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ]
        obj["required_action"] = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {"tool_calls": calls},
        }
        double.stats.tool_rounds["assistants"] += 1
        run.changed.set()
        return
    obj["required_action"] = None
    if status in ("completed", "incomplete"):
        answer = expect.final_answer(
            run.question, run.turn, schema=run.schema, outputs=run.tool_outputs
        )
        text = expect.partial_answer(answer) if status == "incomplete" else answer
        run.message = text_message(
            run.thread.id,
            "assistant",
            text,
            run_id=obj["id"],
            assistant_id=obj["assistant_id"],
            status=status,
        )
        run.thread.messages.append(run.message)
        prompt, completion = expect.usage_for(context(run), text)
        # The run bills every round: the call rounds, then this answer.
        prompt, completion = prompt + run.spent[0], completion + run.spent[1]
        obj["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if status == "completed":
            obj["completed_at"] = stamp
        else:
            obj["incomplete_details"] = {"reason": "max_completion_tokens"}
    elif status == "failed":
        obj["failed_at"] = stamp
        obj["last_error"] = {"code": "server_error", "message": "Injected failure."}
    elif status == "cancelled":
        obj["cancelled_at"] = stamp
    elif status == "expired":
        obj["expires_at"] = stamp
    run.thread.active_run = None
    double.stats.questions[run.question] += 1
    run.changed.set()


def context(run: Run) -> list[str]:
    """The prompt of the run's next round: the thread, then earlier rounds' calls and outputs."""
    return [*run.prompt_messages, *(item.text for item in run.rounds)]


def advance_thread(double: Double, thread: Thread) -> None:
    if thread.active_run is not None:
        advance(double, thread.active_run)


def poll_after_ms(run: Run) -> int:
    """Hint for the SDK's poll helpers: come back when the run is due, at most 1 s."""
    if run.status not in ("queued", "in_progress") or run.outcome == "never":
        return 100
    return min(max(int((run.deadline - time.monotonic()) * 1000) + 1, 1), 1000)


# --- streaming ---


async def _send(response: web.StreamResponse, event: str, data: dict) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def stream_run(
    double: Double,
    request: web.Request,
    run: Run,
    headers: dict[str, str],
    created_thread: Thread | None = None,
    resumed: bool = False,
) -> web.StreamResponse:
    """Stream a run's events until it reaches its outcome, in the Assistants SSE format."""
    response = sse_response(headers)
    await response.prepare(request)
    if created_thread is not None:
        await _send(response, "thread.created", created_thread.as_dict())
    if not resumed:
        await _send(response, "thread.run.created", run.obj)
    await _send(response, "thread.run.queued", run.obj)
    if run.status == "queued":  # not yet cancelled by another request
        start(run)
        await _send(response, "thread.run.in_progress", run.obj)
    while run.status in ("queued", "in_progress", "cancelling"):
        if run.status != "cancelling":
            # [[never]] waits for a cancel (or for aiohttp to cancel us on disconnect).
            timeout = None if run.outcome == "never" else run.deadline - time.monotonic()
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.changed.wait(), timeout)
        advance(double, run)

    status = run.status
    if status in ("completed", "incomplete") and run.message is not None:
        message = run.message
        pending = {
            **message,
            "status": "in_progress",
            "content": [],
            "completed_at": None,
            "incomplete_at": None,
            "incomplete_details": None,
        }
        await _send(response, "thread.message.created", pending)
        await _send(response, "thread.message.in_progress", pending)
        delta_content = [{"index": 0, "type": "text", "text": message["content"][0]["text"]}]
        await _send(
            response,
            "thread.message.delta",
            {
                "id": message["id"],
                "object": "thread.message.delta",
                "delta": {"role": "assistant", "content": delta_content},
            },
        )
        await _send(response, f"thread.message.{status}", message)
    await _send(response, f"thread.run.{status}", run.obj)
    await response.write(b"event: done\ndata: [DONE]\n\n")
    await response.write_eof()
    return response


# --- handlers ---


@api("assistant_create")
async def create_assistant(double: Double, request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body.get("model"):
        raise ApiError(400, "Missing required parameter: 'model'.", param="model")
    assistant = {
        "id": new_id("asst"),
        "object": "assistant",
        "created_at": now_s(),
        "name": body.get("name"),
        "description": body.get("description"),
        "model": body["model"],
        "instructions": body.get("instructions"),
        "tools": body.get("tools") or [],
        "tool_resources": body.get("tool_resources") or {},
        "metadata": body.get("metadata") or {},
        "response_format": body.get("response_format") or "auto",
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
    }
    double.store.assistants[assistant["id"]] = assistant
    return json_response(assistant)


@api("assistant_retrieve")
async def retrieve_assistant(double: Double, request: web.Request) -> web.Response:
    return json_response(get_assistant(double, request.match_info["assistant_id"]))


@api("thread_create")
async def create_thread(double: Double, request: web.Request) -> web.Response:
    body = await json_body(request)
    thread = Thread(new_id("thread"), now_s(), body.get("metadata") or {})
    thread.messages.extend(parse_message(thread.id, m) for m in body.get("messages") or [])
    double.store.threads[thread.id] = thread
    return json_response(thread.as_dict())


@api("thread_retrieve")
async def retrieve_thread(double: Double, request: web.Request) -> web.Response:
    return json_response(get_thread(double, request).as_dict())


@api("message_create")
async def create_message(double: Double, request: web.Request) -> web.Response:
    thread = get_thread(double, request)
    body = await json_body(request)
    advance_thread(double, thread)
    if thread.active_run is not None:
        run_id = thread.active_run.obj["id"]
        raise ApiError(400, f"Can't add messages to {thread.id} while a run {run_id} is active.")
    message = parse_message(thread.id, body)
    thread.messages.append(message)
    return json_response(message)


def _cursor(messages: list[dict], message_id: str | None) -> int | None:
    if message_id is None:
        return None
    for index, message in enumerate(messages):
        if message["id"] == message_id:
            return index
    raise ApiError(400, f"No message found with id '{message_id}'.")


@api("message_list")
async def list_messages(double: Double, request: web.Request) -> web.Response:
    thread = get_thread(double, request)
    advance_thread(double, thread)
    query = request.query
    try:
        limit = min(max(int(query.get("limit", "20")), 1), 100)
    except ValueError:
        raise ApiError(400, "'limit' must be an integer.", param="limit") from None
    messages = thread.messages if query.get("order", "desc") == "asc" else thread.messages[::-1]
    if "run_id" in query:
        messages = [m for m in messages if m["run_id"] == query["run_id"]]
    before = _cursor(messages, query.get("before"))
    if before is not None:
        messages = messages[:before]
    after = _cursor(messages, query.get("after"))
    start = 0 if after is None else after + 1
    return json_response(list_page(messages, start, limit))


async def launch_run(
    double: Double,
    request: web.Request,
    body: dict,
    thread: Thread,
    new_messages: list[dict],
    created_thread: Thread | None = None,
) -> web.StreamResponse:
    """Admit and start a run whose question is the last user message of the thread."""
    assistant = get_assistant(double, body.get("assistant_id"))
    instructions = body.get("instructions")
    if instructions is None:
        instructions = assistant["instructions"] or ""
    if body.get("additional_instructions"):
        instructions = "\n\n".join(filter(None, [instructions, body["additional_instructions"]]))
    history = [(m["role"], message_text(m)) for m in (*thread.messages, *new_messages)]
    question, turn, prompt_messages = dialogue(instructions, history)
    markers = parse_markers(question)
    outcome = MARKER_STATUS.get(markers.outcome, markers.outcome)
    run_tools = body.get("tools") or assistant["tools"]
    response_format = body.get("response_format") or assistant["response_format"]
    schema = tools.chat_schema(response_format)
    # [[requires_action]] keeps its fixed call; otherwise marked tools start with a round.
    planned = (
        []
        if outcome == "requires_action"
        else tools.planned_calls(question, tools.function_names(run_tools))
    )
    if planned:
        final_outcome, outcome = outcome, "requires_action"
        prompt, completion = expect.tool_round_usage(prompt_messages, [a for _, a in planned])
    else:
        final_outcome = "completed"
        answer = expect.final_answer(question, turn, schema=schema)
        text = expect.partial_answer(answer) if outcome == "incomplete" else answer
        prompt, completion = expect.usage_for(prompt_messages, text)
    headers = double.admit("assistant_run", question, markers, prompt + completion)

    # Admitted: only now change state, so a rejected call can be retried as is.
    if created_thread is not None:
        double.store.threads[thread.id] = thread
    thread.messages.extend(new_messages)
    created = now_s()
    obj = {
        "id": new_id("run"),
        "object": "thread.run",
        "created_at": created,
        "assistant_id": assistant["id"],
        "thread_id": thread.id,
        "status": "queued",
        "started_at": None,
        "completed_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "expires_at": created + 600,
        "incomplete_details": None,
        "last_error": None,
        "model": body.get("model") or assistant["model"],
        "instructions": instructions,
        "tools": run_tools,
        "usage": None,
        "required_action": None,
        "response_format": response_format,
        "tool_choice": "auto",
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "parallel_tool_calls": True,
        "metadata": body.get("metadata") or {},
        "temperature": 1.0,
        "top_p": 1.0,
        "max_prompt_tokens": None,
        "max_completion_tokens": None,
    }
    delay_s = double.delay_s(markers)
    run = Run(
        obj=obj,
        thread=thread,
        question=question,
        turn=turn,
        prompt_messages=prompt_messages,
        outcome=outcome,
        delay_s=delay_s,
        deadline=time.monotonic() + delay_s,
        schema=schema,
        planned=planned,
        call_again=markers.call_again,
        final_outcome=final_outcome,
    )
    thread.active_run = run
    double.store.runs[obj["id"]] = run
    if body.get("stream"):
        return await stream_run(double, request, run, headers, created_thread)
    return json_response(obj, headers)


@api("run_create")
async def create_run(double: Double, request: web.Request) -> web.StreamResponse:
    thread = get_thread(double, request)
    body = await json_body(request)
    advance_thread(double, thread)
    if thread.active_run is not None:
        raise ApiError(
            400, f"Thread {thread.id} already has an active run {thread.active_run.obj['id']}."
        )
    extra = [parse_message(thread.id, m) for m in body.get("additional_messages") or []]
    return await launch_run(double, request, body, thread, extra)


@api("run_create")  # create-and-run is counted as a run creation
async def create_thread_and_run(double: Double, request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    spec = body.get("thread") or {}
    # The thread is stored only once the run is admitted.
    thread = Thread(new_id("thread"), now_s(), spec.get("metadata") or {})
    messages = [parse_message(thread.id, m) for m in spec.get("messages") or []]
    return await launch_run(double, request, body, thread, messages, created_thread=thread)


@api("run_retrieve")
async def retrieve_run(double: Double, request: web.Request) -> web.Response:
    run = get_run(double, request)
    advance(double, run)
    return json_response(run.obj, {"openai-poll-after-ms": str(poll_after_ms(run))})


@api("run_cancel")
async def cancel_run(double: Double, request: web.Request) -> web.Response:
    run = get_run(double, request)
    advance(double, run)
    if run.status not in CANCELLABLE:
        raise ApiError(400, f"Cannot cancel run with status '{run.status}'.")
    run.obj["status"] = "cancelling"
    run.changed.set()  # wakes a stream of this run so it reports the cancellation
    return json_response(run.obj)


@api("submit_tool_outputs")
async def submit_tool_outputs(double: Double, request: web.Request) -> web.StreamResponse:
    run = get_run(double, request)
    body = await json_body(request)
    if run.status != "requires_action":
        raise ApiError(
            400, f"Runs in status '{run.status}' do not accept tool outputs.", param="tool_outputs"
        )
    outputs = body.get("tool_outputs")
    if not isinstance(outputs, list):
        raise ApiError(400, "'tool_outputs' must be an array.", param="tool_outputs")
    outputs = [o for o in outputs if isinstance(o, dict)]
    if run.planned:
        by_id = {str(o.get("tool_call_id")): str(o.get("output", "")) for o in outputs}
        expected = [call.call_id for call in run.calls]
        if set(by_id) != set(expected):
            raise ApiError(
                400,
                f"Expected tool outputs for call_ids {expected}, got {sorted(by_id)}.",
                param="tool_outputs",
            )
        run.tool_outputs = [by_id[call_id] for call_id in expected]
        run.rounds += run.calls
        run.rounds += [
            Item(FUNCTION_CALL_OUTPUT, by_id[call.call_id], call.call_id) for call in run.calls
        ]
        run.outcome = "requires_action" if run.call_again else run.final_outcome
    else:  # [[requires_action]]: any outputs, in the order given
        run.tool_outputs = [str(o.get("output", "")) for o in outputs]
        run.outcome = "completed"
    double.stats.tool_outputs["assistants"] += 1
    run.obj["status"] = "queued"
    run.obj["required_action"] = None
    run.deadline = time.monotonic() + run.delay_s
    run.changed = asyncio.Event()
    if body.get("stream"):
        return await stream_run(double, request, run, {}, resumed=True)
    return json_response(run.obj)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/assistants", create_assistant)
    router.add_get("/v1/assistants/{assistant_id}", retrieve_assistant)
    router.add_post("/v1/threads", create_thread)
    router.add_post("/v1/threads/runs", create_thread_and_run)
    router.add_get("/v1/threads/{thread_id}", retrieve_thread)
    router.add_post("/v1/threads/{thread_id}/messages", create_message)
    router.add_get("/v1/threads/{thread_id}/messages", list_messages)
    router.add_post("/v1/threads/{thread_id}/runs", create_run)
    router.add_get("/v1/threads/{thread_id}/runs/{run_id}", retrieve_run)
    router.add_post("/v1/threads/{thread_id}/runs/{run_id}/cancel", cancel_run)
    router.add_post(
        "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs
    )
