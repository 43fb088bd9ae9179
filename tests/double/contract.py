"""The published contract: answers checked with the SDK's models, requests with its params."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from openai import BaseModel
from openai.types import (
    Batch,
    FileDeleted,
    FileObject,
    batch_create_params,
    batch_list_params,
    file_create_params,
)
from openai.types.beta import (
    Assistant,
    AssistantDeleted,
    AssistantStreamEvent,
    Thread,
    ThreadDeleted,
    assistant_create_params,
    thread_create_and_run_params,
    thread_create_params,
)
from openai.types.beta.threads import (
    Message,
    MessageDeleted,
    Run,
    message_create_params,
    message_list_params,
    run_create_params,
    run_submit_tool_outputs_params,
)
from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params
from openai.types.conversations import Conversation, conversation_create_params
from openai.types.conversations.conversation_deleted_resource import ConversationDeletedResource
from openai.types.responses import Response, response_create_params
from openai.types.shared.error_object import ErrorObject

from .typewalk import check, check_object, json_type, shape_of


class MessagePage(BaseModel):
    """A page of thread messages: the SDK's cursor page (``data``, ``has_more``) in the
    published list envelope (``object``, ``first_id``, ``last_id``)."""

    object: Literal["list"]
    data: list[Message]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class BatchPage(BaseModel):
    """A page of batches, in the same list envelope."""

    object: Literal["list"]
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorObject


# Response kinds: what a JSON body or an SSE event's data is, by its SDK type.
RESPONSE_TYPES: dict[str, Any] = {
    "response": Response,
    "conversation": Conversation,
    "conversation.deleted": ConversationDeletedResource,
    "chat.completion": ChatCompletion,
    "chat.completion.chunk": ChatCompletionChunk,
    "assistant": Assistant,
    "assistant.deleted": AssistantDeleted,
    "thread": Thread,
    "thread.deleted": ThreadDeleted,
    "thread.message": Message,
    "thread.message.deleted": MessageDeleted,
    "thread.message.list": MessagePage,
    "thread.run": Run,
    "assistant.event": AssistantStreamEvent,  # {"event": name, "data": ...}
    "file": FileObject,
    "file.deleted": FileDeleted,
    "batch": Batch,
    "batch.list": BatchPage,
    "error": ErrorBody,
}


@dataclass(frozen=True)
class Endpoint:
    """One route: its request params (non-streaming, streaming), answer and stream kinds."""

    method: str
    path: str
    params: tuple[Any, ...] = ()  # () takes no body; one TypedDict, or (plain, stream=True)
    response: str | None = None
    stream: str | None = None  # kind of each SSE event's data, when it can stream
    query: bool = False  # params are the query string (values are strings)
    form_files: frozenset[str] = frozenset()  # a multipart form's file parts (by presence)
    raw: bool = False  # answers bytes (a file's content), not JSON

    @property
    def path_keys(self) -> frozenset[str]:
        """Params the SDK puts in the URL, not in the body."""
        return frozenset(re.findall(r"{(\w+)}", self.path))


_RUN = "/v1/threads/{thread_id}/runs"
ENDPOINTS: dict[str, Endpoint] = {
    "responses.create": Endpoint(
        "POST",
        "/v1/responses",
        (
            response_create_params.ResponseCreateParamsNonStreaming,
            response_create_params.ResponseCreateParamsStreaming,
        ),
        "response",
    ),
    "conversations.create": Endpoint(
        "POST",
        "/v1/conversations",
        (conversation_create_params.ConversationCreateParams,),
        "conversation",
    ),
    "chat.completions.create": Endpoint(
        "POST",
        "/v1/chat/completions",
        (
            completion_create_params.CompletionCreateParamsNonStreaming,
            completion_create_params.CompletionCreateParamsStreaming,
        ),
        "chat.completion",
        "chat.completion.chunk",
    ),
    "assistants.create": Endpoint(
        "POST", "/v1/assistants", (assistant_create_params.AssistantCreateParams,), "assistant"
    ),
    "assistants.retrieve": Endpoint("GET", "/v1/assistants/{assistant_id}", (), "assistant"),
    "threads.create": Endpoint(
        "POST", "/v1/threads", (thread_create_params.ThreadCreateParams,), "thread"
    ),
    "threads.retrieve": Endpoint("GET", "/v1/threads/{thread_id}", (), "thread"),
    "threads.create_and_run": Endpoint(
        "POST",
        "/v1/threads/runs",
        (
            thread_create_and_run_params.ThreadCreateAndRunParamsNonStreaming,
            thread_create_and_run_params.ThreadCreateAndRunParamsStreaming,
        ),
        "thread.run",
        "assistant.event",
    ),
    "threads.messages.create": Endpoint(
        "POST",
        "/v1/threads/{thread_id}/messages",
        (message_create_params.MessageCreateParams,),
        "thread.message",
    ),
    "threads.messages.list": Endpoint(
        "GET",
        "/v1/threads/{thread_id}/messages",
        (message_list_params.MessageListParams,),
        "thread.message.list",
        query=True,
    ),
    "threads.runs.create": Endpoint(
        "POST",
        _RUN,
        (
            run_create_params.RunCreateParamsNonStreaming,
            run_create_params.RunCreateParamsStreaming,
        ),
        "thread.run",
        "assistant.event",
    ),
    "threads.runs.retrieve": Endpoint("GET", _RUN + "/{run_id}", (), "thread.run"),
    "threads.runs.cancel": Endpoint("POST", _RUN + "/{run_id}/cancel", (), "thread.run"),
    "threads.runs.submit_tool_outputs": Endpoint(
        "POST",
        _RUN + "/{run_id}/submit_tool_outputs",
        (
            run_submit_tool_outputs_params.RunSubmitToolOutputsParamsNonStreaming,
            run_submit_tool_outputs_params.RunSubmitToolOutputsParamsStreaming,
        ),
        "thread.run",
        "assistant.event",
    ),
    "files.create": Endpoint(
        "POST",
        "/v1/files",
        (file_create_params.FileCreateParams,),
        "file",
        form_files=frozenset({"file"}),
    ),
    "files.retrieve": Endpoint("GET", "/v1/files/{file_id}", (), "file"),
    "files.content": Endpoint("GET", "/v1/files/{file_id}/content", (), raw=True),
    "files.delete": Endpoint("DELETE", "/v1/files/{file_id}", (), "file.deleted"),
    "batches.create": Endpoint(
        "POST", "/v1/batches", (batch_create_params.BatchCreateParams,), "batch"
    ),
    "batches.retrieve": Endpoint("GET", "/v1/batches/{batch_id}", (), "batch"),
    "batches.cancel": Endpoint("POST", "/v1/batches/{batch_id}/cancel", (), "batch"),
    "batches.list": Endpoint(
        "GET", "/v1/batches", (batch_list_params.BatchListParams,), "batch.list", query=True
    ),
}
ROUTES: dict[tuple[str, str], str] = {(e.method, e.path): name for name, e in ENDPOINTS.items()}


# --- the public checks ---


def check_response(kind: str, body: object) -> list[str]:
    """Messages for a response body (or an SSE event's data) of ``kind``; [] if it conforms."""
    tp = RESPONSE_TYPES.get(kind)
    if tp is None:
        return [f"{kind}: no SDK model is known for this kind"]
    messages: list[str] = []
    check(shape_of(tp), body, "", messages)
    try:
        _adapter(tp).validate_python(body)
    except pydantic.ValidationError as error:
        # The walk explains most failures better (it follows the discriminators); the
        # SDK's own validation is the backstop for what the walk does not look at.
        if not messages:
            for detail in error.errors()[:5]:
                where = ".".join(str(part) for part in detail["loc"])
                messages.append(f"{where or '(body)'}: {detail['msg']} (SDK validation)")
    return [f"{kind}: {message}" for message in messages]


def check_request(kind: str, body: object) -> list[str]:
    """Messages for a request body (query params for a GET list) sent to endpoint ``kind``."""
    endpoint = ENDPOINTS.get(kind)
    if endpoint is None:
        return [f"{kind}: no SDK params are known for this endpoint"]
    if not isinstance(body, dict):
        return [f"{kind}: the body is {json_type(body)}, not an object"]
    if not endpoint.params:
        return [f"{kind}: this endpoint takes no body, got key {key!r}" for key in body]
    params = endpoint.params
    tp = params[1] if len(params) > 1 and body.get("stream") is True else params[0]
    messages: list[str] = []
    shape = shape_of(tp)
    check_object(shape, body, "", messages, skip=endpoint.path_keys, values=not endpoint.query)
    return [f"{kind}: {message}" for message in messages]


def check_form(kind: str, fields: dict[str, str], filename: str | None) -> list[str]:
    """Messages for a multipart request: its text fields checked like a query string, its
    file parts by presence."""
    endpoint = ENDPOINTS[kind]
    folded: dict[str, object] = {}
    for key, value in fields.items():  # "expires_after[seconds]" is a field of expires_after
        outer, _, inner = key.partition("[")
        if inner:
            nested = folded.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner.rstrip("]")] = value
        else:
            folded[key] = value
    messages: list[str] = []
    shape = shape_of(endpoint.params[0])
    check_object(shape, folded, "", messages, skip=endpoint.form_files, values=False)
    if filename is None:
        messages += [f"missing the file part {name!r}" for name in sorted(endpoint.form_files)]
    return [f"{kind}: {message}" for message in messages]


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(tp)


def warm() -> None:
    """Work out every known type's shape and validator up front (about a second)."""
    for tp in RESPONSE_TYPES.values():
        shape_of(tp)
        _adapter(tp)
    for endpoint in ENDPOINTS.values():
        for tp in endpoint.params:
            shape_of(tp)
