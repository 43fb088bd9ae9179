"""The double's Files and Batch APIs, driven by the real openai SDK over real HTTP."""

import json
import time

import openai
import pytest
from openai import OpenAI

from tests.double.expect import answer_for, usage_for

TERMINAL = ("completed", "failed", "expired", "cancelled")
FAST = {"batch_validating_s": 0, "batch_lines_per_s": 0, "batch_finalizing_s": 0}


@pytest.fixture
def client(api):
    """The SDK on the shared double (``api`` resets its options, batch ones included, and
    fails the test on any contract mismatch)."""
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


CHAT_TOOL = {"type": "function", "function": {"name": "evaluate", "parameters": {"type": "object"}}}
CHAT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {k: SCHEMA[k] for k in ("name", "schema", "strict")},
}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/responses", {"input": "Plain? [[cached:3]] [[reasoning:7]]", "instructions": "Short."}),
        ("/responses", {"input": "Cut short [[incomplete]]"}),
        ("/responses", {"input": "Model fails [[fail]]"}),
        ("/responses", {"input": "Structured?", "text": {"format": SCHEMA}}),
        ("/responses", {"input": 'Call it [[call:evaluate:{"x": 1}]]', "tools": [TOOL]}),
        (
            "/responses",
            {
                "input": [
                    {"role": "user", "content": "First turn?"},
                    {"role": "assistant", "content": answer_for("First turn?", 1)},
                    {"role": "user", "content": "Second turn?"},
                ]
            },
        ),
        ("/chat/completions", {"messages": user("Chat? [[cached:2]] [[reasoning:4]]")}),
        ("/chat/completions", {"messages": user("Structured?"), "response_format": CHAT_SCHEMA}),
        ("/chat/completions", {"messages": user("Call [[call:evaluate]]"), "tools": [CHAT_TOOL]}),
    ],
    ids=[
        "usage-markers",
        "incomplete",
        "fail",
        "structured",
        "tool-call",
        "history",
        "chat-usage",
        "chat-structured",
        "chat-tool-call",
    ],
)
def test_a_line_gets_what_the_synchronous_endpoint_answers(api, client, url, body):
    api.configure(**FAST)
    body = {"model": "gpt-test", **body}
    synchronous = client.post(url, body=body, cast_to=object)
    assert api.contract_errors() == []
    api.reset()  # the same fault counters for the batch
    line = {"custom_id": "only", "method": "POST", "url": f"/v1{url}", "body": body}
    batch, _ = wait(client, submit(client, [line], endpoint=f"/v1{url}").id)
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
        response_line("dropped", "Dropped [[reset:1]]"),
        response_line("short", "Tiny", max_output_tokens=5),
    ]
    batch, _ = wait(client, submit(client, lines).id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 6, "completed": 1, "failed": 5}
    assert set(by_id(read_lines(client, batch.output_file_id))) == {"ok"}
    errors = by_id(read_lines(client, batch.error_file_id))
    status = {key: line["response"]["status_code"] for key, line in errors.items()}
    assert status == {"bad": 400, "busy": 429, "broken": 500, "dropped": 500, "short": 400}
    assert errors["busy"]["response"]["body"]["error"]["code"] == "rate_limit_exceeded"
    assert errors["short"]["response"]["body"]["error"]["param"] == "max_output_tokens"
    assert all(line["error"] is None for line in errors.values())
    # [[429:1]], [[500:1]], [[reset:1]] failed once: asked again in a new batch, answered.
    again = wait(client, submit(client, lines[2:5]).id)[0]
    assert again.request_counts.completed == 3
    stats = api.stats()
    assert stats["batch_lines"] == {"answered": 4, "failed": 5}
    assert stats["batch_repeats"] == 0  # a custom_id first failed, then answered once


def test_a_custom_id_answered_twice_is_counted_as_paid_twice(api, client):
    api.configure(**FAST)
    wait(client, submit(client, good(3)).id)
    assert api.stats()["batch_repeats"] == 0
    wait(client, submit(client, good(2)).id)  # the same custom_ids again
    assert api.stats()["batch_repeats"] == 2


def test_the_account_rules_apply_to_every_line(api, client):
    api.configure(quota=2, **FAST)
    batch, _ = wait(client, submit(client, good(3)).id)
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
    (over,) = read_lines(client, batch.error_file_id)
    assert over["response"]["status_code"] == 429
    assert over["response"]["body"]["error"]["code"] == "insufficient_quota"
    api.configure(quota=0)
    unknown = [response_line(f"u{n}", "Q?", model="no-such-model") for n in range(2)]
    batch, _ = wait(client, submit(client, unknown).id)
    assert batch.status == "completed" and batch.request_counts.failed == 2
    codes = {
        line["response"]["body"]["error"]["code"]
        for line in read_lines(client, batch.error_file_id)
    }
    assert codes == {"model_not_found"}


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
        ([*good(1), chat_line("c1", "Chat?")], {}, "url_mismatch", 2, "url"),
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
            "model_mismatch",
            2,
            "body.model",
        ),
        (good(4), {"batch_max_lines": 3}, "too_many_tasks", 4, None),
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
    file_id = upload(client, good(1))
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
    for metadata, param in [
        ({f"k{n}": "v" for n in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"note": "v" * 513}, "metadata.note"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/responses",
                completion_window="24h",
                metadata=metadata,
            )
        assert refused.value.param == param
    assert client.batches.list().data == []


# --- expiry, cancel, limits ---


def test_an_expiring_batch_keeps_what_it_answered_and_reports_the_rest(api, client):
    api.configure(batch_expire_next=1, **FAST)
    lines = good(10)
    batch, seen = wait(client, submit(client, lines).id)
    assert seen == ["expired"] or seen == ["in_progress", "expired"]
    assert batch.expired_at is not None and batch.completed_at is None
    assert batch.request_counts.model_dump() == {"total": 10, "completed": 5, "failed": 0}
    answered = by_id(read_lines(client, batch.output_file_id))
    expired = by_id(read_lines(client, batch.error_file_id))
    assert len(answered) == 5 and set(answered) | set(expired) == {f"r{i}" for i in range(10)}
    assert not set(answered) & set(expired)
    for line in expired.values():
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired" and line["error"]["message"]
    assert api.stats()["batch_lines"] == {"answered": 5, "expired": 5}
    assert api.stats()["config"]["batch_expire_next"] == 0
    # Only the next N batches expire: the rest of the lines, asked again, complete.
    again, _ = wait(client, submit(client, [lines[int(key[1:])] for key in expired]).id)
    assert again.status == "completed" and again.request_counts.completed == 5
    assert api.stats()["batches"] == {"created": 2, "expired": 1, "completed": 1}


def test_a_cancelled_batch_keeps_the_lines_answered_before(api, client):
    api.configure(batch_validating_s=0, batch_lines_per_s=20, batch_cancelling_s=0.3)
    lines = good(200)  # ten seconds of answering: it is cancelled well before the end
    created = submit(client, lines)
    wait(client, created.id, statuses=("in_progress",))
    time.sleep(0.3)
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done_then = cancelling.request_counts.completed
    assert 0 < done_then < 200
    batch, seen = wait(client, created.id)
    assert seen == ["cancelling", "cancelled"]
    assert batch.cancelled_at is not None
    assert batch.request_counts.model_dump() == {"total": 200, "completed": done_then, "failed": 0}
    answered = by_id(read_lines(client, batch.output_file_id))
    cancelled = by_id(read_lines(client, batch.error_file_id))
    assert len(answered) == done_then and len(cancelled) == 200 - done_then
    assert {line["error"]["code"] for line in cancelled.values()} == {"batch_cancelled"}
    assert api.stats()["batch_lines"] == {"answered": done_then, "cancelled": 200 - done_then}
    with pytest.raises(openai.BadRequestError, match="status 'cancelled'"):
        client.batches.cancel(created.id)


def test_a_batch_cancelled_while_validating_runs_no_line(api, client):
    api.configure(batch_validating_s=5, batch_cancelling_s=0)
    created = submit(client, good(3))
    batch = client.batches.cancel(created.id)
    assert batch.status == "cancelled"
    assert batch.output_file_id is None
    cancelled = by_id(read_lines(client, batch.error_file_id))
    assert sorted(cancelled) == ["r0", "r1", "r2"]
    assert api.stats()["questions"] == {}


def test_the_enqueued_token_limit_fails_a_batch_until_running_ones_finish(api, client):
    lines = good(20)  # "Question N?": 2 words + 3 = 5 input tokens a line, 100 in all
    api.configure(batch_enqueued_tokens=150, batch_validating_s=0, batch_lines_per_s=10)
    first = submit(client, lines)  # two seconds in_progress
    second = submit(client, [{**line, "custom_id": f"b-{line['custom_id']}"} for line in lines])
    assert client.batches.retrieve(first.id).status == "in_progress"
    refused, _ = wait(client, second.id)
    assert refused.status == "failed"
    (error,) = refused.errors.data
    assert error.code == "token_limit_exceeded"
    assert "Enqueued token limit reached for gpt-test" in error.message
    assert "Limit: 150 enqueued tokens" in error.message
    assert wait(client, first.id)[0].status == "completed"
    # 60 tokens: over the limit beside the first's 100, within it once the first is done.
    third, _ = wait(client, submit(client, lines[:12]).id)
    assert third.status == "completed"


def test_batch_creations_per_hour_are_capped_with_a_429(api, client):
    api.configure(batch_creations_per_hour=2, **FAST)
    submit(client, good(1))
    submit(client, good(1))
    with pytest.raises(openai.RateLimitError, match="2 per hour") as raised:
        submit(client, good(1))
    assert int(raised.value.response.headers["retry-after"]) > 3000


def test_request_counts_only_grow_and_never_pass_the_total(api, client):
    api.configure(batch_validating_s=0, batch_lines_per_s=100, batch_finalizing_s=0)
    lines = [*good(30), response_line("bad", "No [[400]]")]
    created = submit(client, lines)
    last = (0, 0)
    while True:
        batch = client.batches.retrieve(created.id)
        counts = batch.request_counts
        assert counts.completed + counts.failed <= counts.total
        assert (counts.completed, counts.failed) >= last
        last = (counts.completed, counts.failed)
        if batch.status == "completed":
            break
        time.sleep(0.03)
    assert last == (30, 1)


def test_a_sleep_marker_holds_its_line_on_the_batch_clock(api, client):
    api.configure(batch_validating_s=0, batch_lines_per_s=0, batch_finalizing_s=0)
    created = submit(client, [response_line("slow", "Slow [[sleep:2]]")])
    assert client.batches.retrieve(created.id).status == "in_progress"
    batch, _ = wait(client, created.id)
    assert batch.status == "completed"


# --- files and listing ---


def test_files_round_trip_and_a_deleted_input_does_not_stop_its_batch(api, client):
    api.configure(batch_validating_s=0.2, batch_lines_per_s=0, batch_finalizing_s=0)
    lines = good(4)
    file_id = upload(client, lines)
    stored = client.files.retrieve(file_id)
    assert (stored.purpose, stored.filename, stored.status) == ("batch", "input.jsonl", "processed")
    assert stored.bytes == len(client.files.content(file_id).content)
    assert [json.loads(line) for line in client.files.content(file_id).text.splitlines()] == lines
    created = client.batches.create(
        input_file_id=file_id, endpoint="/v1/responses", completion_window="24h"
    )
    assert client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)
    batch, _ = wait(client, created.id)
    assert batch.status == "completed" and batch.request_counts.completed == 4
    stats = api.stats()
    assert stats["files"] == {"batch": 1, "batch_output": 1}
    output = client.files.retrieve(batch.output_file_id)
    assert (stats["files_live"], stats["files_live_bytes"]) == (1, output.bytes)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="nonsense")


def test_batches_are_listed_newest_first_in_pages(api, client):
    api.configure(**FAST)
    made = [submit(client, good(1)).id for _ in range(5)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == [made[4], made[3]]
    assert first.has_more
    assert [b.id for b in client.batches.list(limit=2, after=made[3]).data] == [made[2], made[1]]
    assert [b.id for b in client.batches.list(limit=2)] == made[::-1]  # every page
    assert all(b.status == "completed" for b in client.batches.list().data)  # advanced too


def test_a_reset_forgets_files_and_batches(api, client):
    api.configure(**FAST)
    batch, _ = wait(client, submit(client, good(2)).id)
    api.reset()
    assert client.batches.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(batch.output_file_id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve(batch.id)
