"""The double's aiohttp application: Responses, Conversations, Chat Completions, the
Assistants routes (in ``assistants``), the Files and Batch APIs (in ``batches``), plus the
unauthenticated /_double control endpoints."""

import json
from dataclasses import replace

from aiohttp import web

from . import assistants, batches, expect, tools
from .core import (
    DOUBLE,
    ApiError,
    Double,
    api,
    dialogue,
    json_body,
    json_response,
    sse_response,
)
from .faults import parse_markers
from .items import chat_dialogue, chat_items, input_items, response_dialogue
from .state import (
    Config,
    Conversation,
    Item,
    new_id,
    now_s,
)
from .tiers import service_tier


def answer_round(question, turn, messages, markers, plan, schema):
    """What a Responses or Chat request gets this round: the tool calls the plan asks for
    (text None), or the final answer, cut short for an incomplete marker; with its usage.

    Returns (markers, text, prompt tokens, completion tokens); a tool round drops the outcome
    markers, which end the answering round only.
    """
    if plan.calls:
        markers = replace(markers, outcome=None)
        arguments = [call.text for call in plan.calls]
        prompt, completion = expect.tool_round_usage(messages, arguments, markers.reasoning)
        return markers, None, prompt, completion
    answer = expect.final_answer(question, turn, schema=schema, outputs=plan.outputs)
    text = expect.partial_answer(answer) if markers.outcome == "incomplete" else answer
    prompt, completion = expect.usage_for(messages, text, markers.reasoning)
    return markers, text, prompt, completion


def function_call_item(call: Item) -> dict:
    return {
        "type": "function_call",
        "id": new_id("fc"),
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.text,
        "status": "completed",
    }


@api("conversation_create")
async def create_conversation(double: Double, request: web.Request) -> web.Response:
    body = await json_body(request)
    items = input_items(body.get("items"))
    users = [item.text for item in items if item.role == "user"]
    if users:  # only the items can carry markers here
        double.admit(
            "conversation_create", users[-1], parse_markers(users[-1]), 0, run_creating=False
        )
    conversation = Conversation(new_id("conv"), now_s(), body.get("metadata") or {}, items)
    double.store.conversations[conversation.id] = conversation
    return json_response(conversation.as_dict())


@api("response")
async def create_response(double: Double, request: web.Request) -> web.Response:
    return json_response(*await answer_response(double, await json_body(request)))


async def answer_response(
    double: Double, body: dict, *, batch: bool = False
) -> tuple[dict, dict[str, str]]:
    """The Response object a request body gets, and its headers; raises ApiError.

    A batch line (``batch``) is admitted by its markers only (the Batch API has its own
    quota, not the rpm/tpm limits) and answered without waiting: the batch paces it.
    """
    if body.get("stream"):
        raise ApiError(400, "The double does not stream responses.", param="stream")
    if body.get("previous_response_id"):
        raise ApiError(400, "The double does not keep responses.", param="previous_response_id")
    conversation = None
    ref = body.get("conversation")
    if ref is not None:
        conversation_id = ref.get("id") if isinstance(ref, dict) else ref
        conversation = double.store.conversations.get(conversation_id)
        if conversation is None:
            raise ApiError(
                404, f"Conversation with id '{conversation_id}' not found.", param="conversation"
            )
    inputs = input_items(body.get("input"))
    history = conversation.items if conversation else []
    context = [*history, *inputs]
    tools.check_outputs(context, "input")
    question, turn, messages = dialogue(body.get("instructions"), context)
    markers = parse_markers(question)
    plan = tools.plan(question, markers, body.get("tools"), context)
    schema = tools.responses_schema(body.get("text"))
    markers, text, prompt, completion = answer_round(
        question, turn, messages, markers, plan, schema
    )
    tier = service_tier(double, "response", body, question, markers)
    kind = "batch_response" if batch else "response"
    headers = double.admit(kind, question, markers, prompt + completion, run_creating=not batch)
    if not batch:
        await double.delay(markers)

    created = now_s()
    failed = markers.outcome == "fail"
    status = (
        "failed" if failed else "incomplete" if markers.outcome == "incomplete" else "completed"
    )
    output = []
    usage = None
    if plan.continuing:
        double.stats.tool_outputs["responses"] += 1
    if not failed:
        if plan.calls:
            output = [function_call_item(call) for call in plan.calls]
        else:
            output = [
                {
                    "type": "message",
                    "id": new_id("msg"),
                    "role": "assistant",
                    "status": status,
                    "content": [
                        {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                    ],
                }
            ]
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": markers.cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": markers.reasoning},
            "total_tokens": prompt + completion,
        }
        if conversation is not None:
            conversation.items.extend(inputs)
            conversation.items.extend(plan.calls or [Item("assistant", text)])
    response = {
        "id": new_id("resp"),
        "object": "response",
        "created_at": created,
        "completed_at": created if status == "completed" else None,
        "status": status,
        "background": False,
        "error": (
            {"code": "server_error", "message": "The model failed (injected)."} if failed else None
        ),
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete" else None),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "conversation": {"id": conversation.id} if conversation else None,
        "service_tier": tier,
    }
    if plan.calls:
        double.stats.tool_rounds["responses"] += 1
    else:
        double.stats.questions[question] += 1
    return response, headers


@api("chat")
async def create_chat_completion(double: Double, request: web.Request) -> web.StreamResponse:
    answer = await answer_chat(double, await json_body(request), request)
    return answer if isinstance(answer, web.StreamResponse) else json_response(*answer)


async def answer_chat(
    double: Double, body: dict, request: web.Request | None = None, *, batch: bool = False
) -> web.StreamResponse | tuple[dict, dict[str, str]]:
    """The ChatCompletion a request body gets and its headers, or the stream it asks for
    (only with a ``request`` to stream to); raises ApiError. ``batch`` as for
    ``answer_response``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty array.", param="messages")
    items = chat_items(messages)
    tools.check_outputs(items, "messages")
    question, turn, prompt_messages = dialogue(None, items)
    markers = parse_markers(question)
    plan = tools.plan(question, markers, body.get("tools"), items)
    schema = tools.chat_schema(body.get("response_format"))
    markers, text, prompt, completion = answer_round(
        question, turn, prompt_messages, markers, plan, schema
    )
    tier = service_tier(double, "chat", body, question, markers)
    kind = "batch_chat" if batch else "chat"
    headers = double.admit(kind, question, markers, prompt + completion, run_creating=not batch)
    if not batch:
        await double.delay(markers)
    if plan.continuing:
        double.stats.tool_outputs["chat"] += 1
    if plan.calls:
        double.stats.tool_rounds["chat"] += 1
    else:
        double.stats.questions[question] += 1
    if markers.outcome == "fail":
        raise ApiError(400, "injected failure")

    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": markers.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": markers.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    head = {
        "id": new_id("chatcmpl", "-"),
        "created": now_s(),
        "model": body.get("model"),
        "service_tier": tier,
        "system_fingerprint": "fp_double",
    }
    tool_calls = [
        {
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.text},
        }
        for call in plan.calls
    ]
    finish_reason = (
        "tool_calls" if tool_calls else "length" if markers.outcome == "incomplete" else "stop"
    )
    if body.get("stream") and request is not None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await stream_chat(
            request,
            head,
            text,
            finish_reason,
            usage if include_usage else None,
            headers,
            tool_calls,
        )
    message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_calls
    completion_obj = {
        **head,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
    return completion_obj, headers


async def stream_chat(
    request: web.Request,
    head: dict,
    text: str | None,
    finish_reason: str,
    usage: dict | None,
    headers: dict[str, str],
    tool_calls: list[dict],
) -> web.StreamResponse:
    """Chat chunks as SSE: role, content (or one chunk per tool call), finish reason, then
    usage if asked, then [DONE]."""
    response = sse_response(headers)
    await response.prepare(request)
    base = {**head, "object": "chat.completion.chunk"}

    def chunk(delta: dict, finish: str | None) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        data = {**base, "choices": [choice]}
        if usage is not None:
            data["usage"] = None  # as OpenAI does when include_usage is set
        return data

    if tool_calls:
        chunks = [chunk({"role": "assistant", "content": None, "refusal": None}, None)]
        chunks += [
            chunk({"tool_calls": [{"index": index, **call}]}, None)
            for index, call in enumerate(tool_calls)
        ]
    else:
        chunks = [
            chunk({"role": "assistant", "content": "", "refusal": None}, None),
            chunk({"content": text}, None),
        ]
    chunks.append(chunk({}, finish_reason))
    if usage is not None:
        chunks.append({**base, "choices": [], "usage": usage})
    payload = "".join(f"data: {json.dumps(data)}\n\n" for data in chunks) + "data: [DONE]\n\n"
    await response.write(payload.encode())
    await response.write_eof()
    return response


# --- control endpoints (no auth) ---


async def control_stats(request: web.Request) -> web.Response:
    double = request.app[DOUBLE]
    stats = {**double.stats.as_dict(), "config": double.config.as_dict()}
    stats.update(contract_checking=double.check_contract, contract_errors=double.contract_errors)
    stored = double.store.files.values()  # what is stored now (stats["files"]: ever)
    stats.update(files_live=len(stored), files_live_bytes=sum(f.obj["bytes"] for f in stored))
    return json_response(stats)


async def control_config(request: web.Request) -> web.Response:
    double = request.app[DOUBLE]
    try:
        double.configure(await request.json())
    except (ValueError, TypeError, AttributeError) as error:
        return json_response({"error": str(error)}, status=400)
    return json_response(double.config.as_dict())


async def control_reset(request: web.Request) -> web.Response:
    request.app[DOUBLE].reset()
    return json_response({"ok": True})


def create_app(config: Config | None = None, check_contract: bool = False) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[DOUBLE] = Double(config, check_contract=check_contract)
    app.router.add_post("/v1/conversations", create_conversation)
    app.router.add_post("/v1/responses", create_response)
    app.router.add_post("/v1/chat/completions", create_chat_completion)
    assistants.add_routes(app.router)
    batches.add_routes(
        app,
        {
            "/v1/responses": batches.Surface(
                "response", answer_response, response_dialogue, ("responses.create", "response")
            ),
            "/v1/chat/completions": batches.Surface(
                "chat",
                answer_chat,
                chat_dialogue,
                ("chat.completions.create", "chat.completion"),
            ),
        },
    )
    app.router.add_get("/_double/stats", control_stats)
    app.router.add_post("/_double/config", control_config)
    app.router.add_post("/_double/reset", control_reset)
    return app


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    config: Config | None = None,
    check_contract: bool = False,
) -> tuple[web.AppRunner, int]:
    """Start the double; return its runner (for ``cleanup()``) and the bound port."""
    runner = web.AppRunner(
        create_app(config, check_contract),
        access_log=None,  # no per-request logging: the double is also a benchmark target
        handler_cancellation=True,  # a client disconnect cancels [[never]] waits and streams
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner, runner.addresses[0][1]
