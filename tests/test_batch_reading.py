"""Reading what real Batch API servers write: OGX's lines (a body as a JSON string, error lines
without a status code), batches that skip statuses or leave `request_counts` out, and a fuzzed
stream of malformed and unexpected lines, each of which ends as its own row's outcome."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.batch import results
from worker.batch.records import BatchRecord
from worker.models import BATCH_TIER, COMPLETED, FAILED, FINAL_STATUSES, JobSpec, Row
from worker.providers.base import JobContext

JOB = "20250301-142501-0a1b2c"
CHAT = JobContext(JobSpec(job_id=JOB, provider="chat", model="m", total=5, batch=True))
RESPONSES = JobContext(JobSpec(job_id=JOB, provider="responses", model="m", total=5, batch=True))
ROW = Row(2, "3", "what is 2 + 3?", model="m")

# A completion as OGX 1.5.0 wrote it into an output file (its line's body is this, as a string).
OGX_COMPLETION = {
    "id": "chatcmpl-WkKHt",
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"content": "5.", "role": "assistant", "tool_calls": None},
        }
    ],
    "model": "llamacpp/SmolLM2-135M-Instruct.Q4_1",
    "object": "chat.completion",
    "service_tier": None,
    "usage": {"completion_tokens": 3, "prompt_tokens": 37, "total_tokens": 40},
    "timings": {"prompt_n": 37},
}


def line(**fields) -> dict:
    return {"id": "batch_req_1", "custom_id": f"{JOB}:2:1", **fields}


def read(job, raw):
    parsed = results.parse(raw if isinstance(raw, str | bytes) else json.dumps(raw), JOB)
    assert parsed is not None and parsed[:2] == (2, 1)
    return results.read(job, ROW, 1, parsed[2], 1.5, "batch_t")


def test_ogx_writes_the_body_as_a_json_string():
    body = json.dumps(OGX_COMPLETION)
    out = read(CHAT, line(response={"status_code": 200, "request_id": "r", "body": body}))
    result = out.result
    assert result is not None and result.status == COMPLETED, result
    assert result.answer == "5." and result.run_id == "chatcmpl-WkKHt"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (37, 3)
    assert result.service_tier == BATCH_TIER and result.model.startswith("llamacpp/")
    as_object = read(CHAT, line(response={"status_code": 200, "body": OGX_COMPLETION}))
    assert as_object.result == result, "an object and its JSON string read the same"


def test_error_lines_without_a_status_code_are_told_by_their_words():
    def error(message, kind="request_failed"):
        return read(CHAT, line(error={"type": kind, "message": message}))

    refused = error("1 validation error for OpenAIChatCompletionRequestWithExtraBody\nx")
    assert refused.result is not None and refused.result.status == FAILED
    assert refused.result.error.startswith("request_failed: 1 validation error")
    assert "\n" not in refused.result.error
    for waiting_helps in (
        "Connection error.",
        "Error code: 503 - {'error': 'unavailable'}",
        "Request timed out.",
        "Error code: 429 - rate limit reached",
    ):
        out = error(waiting_helps)
        assert out.result is None and out.again.startswith("request_failed: "), waiting_helps
    assert error("Error code: 400 - context length exceeded").result.status == FAILED
    assert error("Error code: 429 - insufficient_quota").result.status == FAILED, "money"
    expired = read(CHAT, line(response=None, error={"code": "batch_expired", "message": "late"}))
    assert expired.unfinished and expired.result is None


def test_a_status_code_as_text_and_an_answer_without_one_are_read():
    as_text = read(CHAT, line(response={"status_code": "200", "body": OGX_COMPLETION}))
    assert as_text.result.status == COMPLETED
    no_code = read(CHAT, line(response={"body": OGX_COMPLETION}))
    assert no_code.result.status == COMPLETED
    busy = read(CHAT, line(response={"status_code": 503, "body": {"error": {"message": "busy"}}}))
    assert busy.again == "503: busy"


def test_unreadable_lines_fail_their_row_naming_the_cause():
    cases = {
        f'{{"custom_id": "{JOB}:2:1", "response": {{"status_c': "not a JSON object",
        json.dumps(line(response={"status_code": 200, "body": "{not json"})): "not JSON",
        json.dumps(line(response={"status_code": 200, "body": [1, 2]})): "a list, not an object",
        json.dumps(line(response={"status_code": 200, "body": {"choices": []}})): "choices[0]",
        json.dumps(line(response={"status_code": "OK", "body": {}})): "status_code is 'OK'",
        json.dumps(line()): "neither a response nor an error",
    }
    for raw, cause in cases.items():
        out = read(CHAT, raw)
        assert out.result is not None and out.result.status == FAILED, raw
        assert out.result.error.startswith("the server's line for this row could not be read")
        assert cause in out.result.error, (cause, out.result.error)
        assert out.result.attempts == 1 and out.result.service_tier == BATCH_TIER
    odd_usage = dict(OGX_COMPLETION, usage={"prompt_tokens": "many", "completion_tokens": 2})
    out = read(CHAT, line(response={"status_code": 200, "body": odd_usage}))
    assert out.result.status == FAILED and "usage" in out.result.error
    assert results.parse(b"\xff\xfe garbage", JOB) is None, "no row named: no row touched"
    assert results.parse(json.dumps(line(custom_id="someone-else:1:1")), JOB) is None


def test_a_batch_that_skips_statuses_or_leaves_counts_out():
    record = BatchRecord(key="file-1", seq=1, model="m", rows=[[0, 1], [1, 1], [2, 1]])
    assert record.follow({"id": "b", "status": "validating", "request_counts": None})
    assert (record.status, record.completed, record.failed) == ("validating", 0, 0)
    record.follow({"status": "in_progress", "request_counts": {"total": 3}})  # partial
    assert (record.completed, record.failed) == (0, 0)
    record.follow({"status": "in_progress", "request_counts": {"completed": 2, "failed": "x"}})
    assert (record.completed, record.failed) == (2, 0)
    record.follow({"status": None, "output_file_id": 7, "expires_at": None})
    assert record.status == "in_progress" and record.output_file_id == ""
    record.follow({"status": "completed", "output_file_id": "file-o", "error_file_id": None})
    assert (record.status, record.output_file_id, record.completed) == ("completed", "file-o", 2)
    assert not record.follow("not an object")


def test_a_batch_is_given_up_a_margin_past_its_window_or_its_cancel():
    record = BatchRecord(key="file-1", seq=1, model="m", rows=[[0, 1]], submitted_at=1000.0)
    assert record.give_up_at(60) == 1000 + 24 * 3600 + 60, "OGX says no expires_at"
    record.follow({"expires_at": 5000})
    assert record.give_up_at(60) == 5060
    record.cancel_asked_at = 2000.0
    assert record.give_up_at(60) == 2060, "a cancel that never ends is waited on a margin"


def test_a_validation_that_names_lines_fails_only_those():
    record = BatchRecord(key="file-1", seq=1, model="m", rows=[[0, 1], [1, 1], [2, 1]])
    record.follow(
        {
            "status": "failed",
            "errors": {
                "data": [{"code": "model_not_found", "line": 2, "message": "no such model"}]
            },
        }
    )
    assert record.line_errors == {"2": "model_not_found: no such model"} and record.unasked
    file_wide = BatchRecord(key="file-2", seq=2, model="m", rows=[[0, 1]])
    file_wide.follow(
        {"status": "failed", "errors": {"data": [{"code": "too_many_tasks", "line": 1}]}}
    )
    assert not file_wide.line_errors and not file_wide.unasked
    unnamed = BatchRecord(key="file-3", seq=3, model="m", rows=[[0, 1]])
    unnamed.follow({"status": "failed", "errors": {"data": [{"message": "Cannot find file"}]}})
    assert not unnamed.line_errors and unnamed.error == "error: Cannot find file"


# --- fuzzing: any line, any shape ------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-5, 700) | st.floats() | st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "content": values,
        "role": values,
        "tool_calls": values
        | st.lists(
            st.dictionaries(st.sampled_from(["id", "function", "type"]), values), max_size=2
        ),
    },
)
choices = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "message": messages | values,
            "finish_reason": st.sampled_from(["stop", "length", "tool_calls"]) | values,
        },
    ),
    max_size=2,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "choices": choices | values,
        "usage": st.dictionaries(
            st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]),
            st.integers(0, 99) | values,
        )
        | values,
        "model": values,
        "id": values,
        "output": values,
        "status": values,
        "error": values,
    },
)
# Well-formed completions with a field or two changed: answers, some of them odd.
near_answers = st.builds(
    lambda changed, text: {
        **OGX_COMPLETION,
        "choices": [{"finish_reason": "stop", "message": {"content": text}}],
        **changed,
    },
    st.dictionaries(st.sampled_from(["usage", "model", "id", "service_tier"]), values, max_size=1),
    st.text(max_size=30),
)
bodies = bodies | near_answers
errors = (
    st.fixed_dictionaries(
        {},
        optional={
            "code": values | st.sampled_from(["batch_expired", "batch_cancelled"]),
            "type": values,
            "message": values,
        },
    )
    | values
)
responses = st.fixed_dictionaries(
    {},
    optional={
        "status_code": st.sampled_from([200, 400, 429, 500, "200"]) | values,
        "body": bodies | bodies.map(json.dumps) | values,
    },
)
lines = st.fixed_dictionaries(
    {"custom_id": st.just(f"{JOB}:2:1")}, optional={"response": responses | values, "error": errors}
)


def check(out: results.Outcome) -> None:
    """The row-level outcome every line must come to: a well-formed result, or asked again."""
    assert out.index == ROW.index and out.attempt == 1
    if out.result is None:
        assert out.again.strip() or out.continuing is not None
        assert "\n" not in out.again
        return
    result = out.result
    assert result.status in FINAL_STATUSES
    assert isinstance(result.answer, str) and isinstance(result.error, str)
    assert "\n" not in result.error and len(result.error) <= 1000
    assert result.status == COMPLETED or result.error, result
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(result.usage, name)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=lines, job=st.sampled_from([CHAT, RESPONSES]))
def test_any_line_naming_a_row_ends_as_that_rows_outcome(line, job):
    check(read(job, line))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200), cut=st.integers(0, 400))
def test_any_bytes_either_name_no_row_or_end_as_its_outcome(raw, cut):
    as_text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    truncated = json.dumps(line(response={"status_code": 200, "body": as_text}))[:cut]
    for candidate in (raw, truncated):
        parsed = results.parse(candidate, JOB)
        if parsed is not None:  # only the truncated line names a row of the job: row 2
            assert parsed[:2] == (2, 1)
            check(results.read(CHAT, ROW, 1, parsed[2], 0.0, "t"))
