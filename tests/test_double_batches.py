"""The double's Files and Batch APIs, driven by the real openai SDK over real HTTP."""

import json
import time

import openai
import pytest
from openai import OpenAI

from tests.double.expect import answer_for, usage_for
from tests.double.fixture import BATCH_OPTIONS

TERMINAL = ("completed", "failed", "expired", "cancelled")
FAST = {"batch_validating_s": 0, "batch_lines_per_s": 0, "batch_finalizing_s": 0}


@pytest.fixture(autouse=True)
def batch_options(api):
    """The shared double (``api`` resets it and checks the contract), batch options reset."""
    api.configure(**BATCH_OPTIONS)
    yield
    api.configure(**BATCH_OPTIONS)


@pytest.fixture
def client(api):
    sdk = OpenAI(api_key="sk-test", base_url=api.base_url, max_retries=0)
    yield sdk
    sdk.close()


def response_line(custom_id: str, question: str, **body) -> dict:
    body = {"model": "gpt-test", "input": question, **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/responses", "body": body}


def chat_line(custom_id: str, question: str, **body) -> dict:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": question}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def upload(client, lines: list, purpose: str = "batch") -> str:
    data = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    return client.files.create(file=("input.jsonl", data), purpose=purpose).id


def submit(client, lines: list, endpoint: str = "/v1/responses", **kwargs):
    file_id = upload(client, lines)
    return client.batches.create(
        input_file_id=file_id, endpoint=endpoint, completion_window="24h", **kwargs
    )


def wait(client, batch_id: str, statuses=TERMINAL, timeout: float = 30.0) -> tuple:
    """The batch once its status is one of ``statuses``, and every status seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in statuses:
            return batch, seen
        assert time.monotonic() < deadline, f"batch still {batch.status} after {timeout} s"
        time.sleep(0.02)


def read_lines(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def by_id(lines: list[dict]) -> dict[str, dict]:
    found = {line["custom_id"]: line for line in lines}
    assert len(found) == len(lines), "a custom_id came back twice"
    return found


# --- the happy path ---


def test_a_batch_runs_to_completed_and_its_output_joins_on_custom_id(api, client):
    api.configure(batch_validating_s=0.3, batch_lines_per_s=40, batch_finalizing_s=0.3)
    questions = [f"What is {n} + {n}?" for n in range(30)]
    lines = [response_line(f"row-{n}", q) for n, q in enumerate(questions)]
    created = submit(client, lines, metadata={"job": "j1"})
    assert created.status == "validating"
    assert created.request_counts.total == 0
    batch, seen = wait(client, created.id)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert batch.request_counts.model_dump() == {"total": 30, "completed": 30, "failed": 0}
    assert batch.metadata == {"job": "j1"} and batch.model == "gpt-test"
    assert batch.error_file_id is None
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.expires_at == batch.created_at + 24 * 3600

    output = read_lines(client, batch.output_file_id)
    ids = [line["custom_id"] for line in output]
    assert ids != [line["custom_id"] for line in lines]  # not in input order
    answered = by_id(output)
    assert sorted(answered) == sorted(line["custom_id"] for line in lines)
    prompt_total = completion_total = 0
    for n, question in enumerate(questions):
        line = answered[f"row-{n}"]
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        body = openai.types.responses.Response.model_validate(line["response"]["body"])
        answer = answer_for(question, 1)
        assert body.output_text == answer
        prompt, completion = usage_for([question], answer)
        assert (body.usage.input_tokens, body.usage.output_tokens) == (prompt, completion)
        prompt_total, completion_total = prompt_total + prompt, completion_total + completion
    assert (batch.usage.input_tokens, batch.usage.output_tokens) == (
        prompt_total,
        completion_total,
    )
    stats = api.stats()
    assert stats["batches"] == {"created": 1, "completed": 1}
    assert stats["batch_lines"] == {"answered": 30}
    assert stats["files"] == {"batch": 1, "batch_output": 1}
    assert all(stats["questions"][q] == 1 for q in questions)  # each answered once
    output_file = client.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output"
    assert output_file.filename == f"{batch.id}_output.jsonl"


def test_chat_lines_are_answered_like_chat_completions(api, client):
    api.configure(**FAST)
    lines = [chat_line(f"c{n}", f"Chat question {n}?") for n in range(5)]
    batch, _ = wait(client, submit(client, lines, endpoint="/v1/chat/completions").id)
    assert batch.status == "completed"
    for custom_id, line in by_id(read_lines(client, batch.output_file_id)).items():
        completion = openai.types.chat.ChatCompletion.model_validate(line["response"]["body"])
        question = f"Chat question {custom_id[1:]}?"
        assert completion.choices[0].message.content == answer_for(question, 1)


def strip_ids(value):
    """A response body without what differs between two answers: ids and timestamps."""
    if isinstance(value, dict):
        return {
            key: strip_ids(item)
            for key, item in value.items()
            if key not in ("id", "created_at", "completed_at", "created", "call_id")
        }
    if isinstance(value, list):
        return [strip_ids(item) for item in value]
    return value


SCHEMA = {
    "type": "json_schema",
    "name": "sum",
    "schema": {
        "type": "object",
        "properties": {"total": {"type": "integer"}, "why": {"type": "string"}},
        "required": ["total", "why"],
        "additionalProperties": False,
    },
    "strict": True,
}
TOOL = {"type": "function", "name": "evaluate", "parameters": {"type": "object"}, "strict": False}


@pytest.mark.parametrize(
    "body",
    [
        {"input": "Plain? [[cached:3]] [[reasoning:7]]", "instructions": "Be brief."},
        {"input": "Cut short [[incomplete]]"},
        {"input": "Model fails [[fail]]"},
        {"input": "Structured?", "text": {"format": SCHEMA}},
        {"input": 'Call it [[call:evaluate:{"x": 1}]]', "tools": [TOOL]},
        {
            "input": [
                {"role": "user", "content": "First turn?"},
                {"role": "assistant", "content": answer_for("First turn?", 1)},
                {"role": "user", "content": "Second turn?"},
            ]
        },
    ],
    ids=["usage-markers", "incomplete", "fail", "structured", "tool-call", "history"],
)
def test_a_line_gets_what_the_synchronous_endpoint_answers(api, client, body):
    api.configure(**FAST)
    body = {"model": "gpt-test", **body}
    synchronous = client.post("/responses", body=body, cast_to=object)
    assert api.contract_errors() == []
    api.reset()  # the same fault counters for the batch
    line = {"custom_id": "only", "method": "POST", "url": "/v1/responses", "body": body}
    batch, _ = wait(client, submit(client, [line]).id)
    (answered,) = read_lines(client, batch.output_file_id)
    assert strip_ids(answered["response"]["body"]) == strip_ids(synchronous)


# --- lines that fail ---


def test_failing_lines_go_to_the_error_file_with_their_status(api, client):
    api.configure(**FAST)
    lines = [
        response_line("ok", "Fine?"),
        response_line("bad", "Refused [[400]]"),
        response_line("busy", "Busy [[429:1]]"),
        response_line("broken", "Broken [[500:1]]"),
        response_line("short", "Tiny", max_output_tokens=5),
    ]
    batch, _ = wait(client, submit(client, lines).id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 1, "failed": 4}
    assert set(by_id(read_lines(client, batch.output_file_id))) == {"ok"}
    errors = by_id(read_lines(client, batch.error_file_id))
    status = {key: line["response"]["status_code"] for key, line in errors.items()}
    assert status == {"bad": 400, "busy": 429, "broken": 500, "short": 400}
    assert errors["busy"]["response"]["body"]["error"]["code"] == "rate_limit_exceeded"
    assert errors["short"]["response"]["body"]["error"]["param"] == "max_output_tokens"
    assert all(line["error"] is None for line in errors.values())
    # [[429:1]] and [[500:1]] failed once: asked again in a new batch, they are answered.
    again = wait(client, submit(client, lines[2:4]).id)[0]
    assert again.request_counts.completed == 2
    assert api.stats()["batch_lines"] == {"answered": 3, "failed": 4}


@pytest.mark.parametrize("param", ["conversation", "previous_response_id"])
def test_conversation_state_is_refused_inside_a_batch(api, client, param):
    api.configure(**FAST)
    lines = [response_line("ok", "Fine?"), response_line("ref", "Next?", **{param: "conv_x"})]
    batch, _ = wait(client, submit(client, lines).id)
    assert batch.status == "completed"
    (refused,) = read_lines(client, batch.error_file_id)
    assert refused["custom_id"] == "ref"
    assert refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["param"] == param
    assert "Next?" not in api.stats()["questions"]


# --- validation ---


def good(n: int) -> list[dict]:
    return [response_line(f"r{i}", f"Question {i}?") for i in range(n)]


@pytest.mark.parametrize(
    ("lines", "options", "code", "line", "param"),
    [
        ([*good(2), b"{not json", *good(1)], {}, "invalid_json_line", 3, None),
        ([*good(2), response_line("r0", "Again?")], {}, "duplicate_custom_id", 3, "custom_id"),
        ([*good(1), chat_line("c1", "Chat?")], {}, "mismatched_endpoint", 2, "url"),
        (
            [*good(1), {**good(1)[0], "custom_id": "x", "method": "GET"}],
            {},
            "invalid_method",
            2,
            "method",
        ),
        (
            [*good(1), response_line("other", "Q?", model="gpt-other")],
            {},
            "mismatched_model",
            2,
            "body.model",
        ),
        (good(4), {"batch_max_lines": 3}, "too_many_requests", 4, None),
        (good(4), {"batch_max_bytes": 100}, "file_too_large", None, None),
        ([], {}, "empty_file", None, None),
    ],
    ids=["json", "duplicate", "url", "method", "two-models", "too-many", "too-big", "empty"],
)
def test_a_file_that_breaks_a_rule_fails_validation(api, client, lines, options, code, line, param):
    api.configure(batch_validating_s=0.2, **options)
    created = submit(client, lines)
    batch, seen = wait(client, created.id)
    assert seen == ["validating", "failed"]
    assert batch.failed_at is not None
    assert batch.output_file_id is None and batch.error_file_id is None
    first = batch.errors.data[0]
    assert (first.code, first.line, first.param) == (code, line, param)
    assert first.message
    assert api.stats()["batches"] == {"created": 1, "failed": 1}
    assert api.stats()["questions"] == {}


def test_create_refuses_a_file_of_another_purpose_and_an_unknown_one(client):
    file_id = upload(client, good(1), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/responses", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/responses", completion_window="24h"
        )
