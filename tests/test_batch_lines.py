"""The Batch API route's pure parts: a row's line carries what a synchronous run sends (one
function builds both), files split at the line and byte limits with one model each, and a
line that came back becomes the cells a synchronous run gives, joined on custom_id."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from worker.batch import results
from worker.batch.lines import LineBuilder, custom_id, parse_custom_id, write_files
from worker.models import COMPLETED, FAILED, JobSpec, Row
from worker.providers import chat, responses
from worker.providers.base import JobContext

PROFILE = {
    "instructions": "Be brief.",
    "temperature": 0.3,
    "max_output_tokens": 300,
    "response_format": {"name": "short", "schema": {"type": "object"}},
}


def spec(provider: str, **kw) -> JobSpec:
    return JobSpec(
        job_id="20250301-142501-1a2b3c",
        provider=provider,
        model="gpt-5-mini",
        instructions="Be brief.",
        profile=PROFILE,
        safety_identifier="abc",
        **kw,
    )


def test_custom_ids_name_job_row_and_attempt():
    ident = custom_id("20250301-142501-1a2b3c", 41, 3)
    assert ident == "20250301-142501-1a2b3c:41:3"
    assert parse_custom_id(ident) == ("20250301-142501-1a2b3c", 41, 3)
    assert parse_custom_id("someone-else") is None
    assert parse_custom_id("job:x:1") is None


def test_a_responses_line_is_the_synchronous_request_with_history_as_input():
    job = JobContext(spec("responses"))
    row = Row(4, "5", "what next?", thread="A")
    builder = LineBuilder(job)
    sync = responses.request_params(job, responses.static_params(job), row, row.question)
    assert builder.body(row, []) == sync, "a first turn sends exactly what a run sends"
    assert {"model", "instructions", "temperature", "max_output_tokens", "text"} <= set(sync)
    assert sync["prompt_cache_key"].startswith("askbatch-") and sync["safety_identifier"]
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    later = builder.body(row, history)
    assert later["input"] == [*history, {"role": "user", "content": "what next?"}]
    assert "conversation" not in later and "previous_response_id" not in later
    line = json.loads(builder.line(row, 2, history))
    assert line["custom_id"].endswith(":4:2") and line["url"] == "/v1/responses"
    assert line["method"] == "POST" and line["body"] == later


def test_a_chat_line_carries_the_thread_as_messages():
    job = JobContext(spec("chat"))
    row = Row(0, "1", "and then?", model="gpt-4o-mini")
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    body = LineBuilder(job).body(row, history)
    user = [{"role": "user", "content": "and then?"}]
    assert body == chat.request_params(job, chat.static_params(job), row, history, user)
    assert body["model"] == "gpt-4o-mini" and body["max_tokens"] == 300
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][1:] == [*history, *user]
    assert body["response_format"]["type"] == "json_schema"


def test_files_split_at_the_line_limit_and_hold_one_model_each(tmp_path):
    lines = [("m1" if i % 3 else "m2", i, 1, b'{"x": %d}\n' % i) for i in range(10)]
    files = list(write_files(iter(lines), max_lines=3, directory=str(tmp_path)))
    try:
        assert sum(len(f.rows) for f in files) == 10
        assert all(len(f.rows) <= 3 for f in files)
        for f in files:
            text = Path(f.path).read_bytes().splitlines()
            assert len(text) == len(f.rows)
            assert all((("m1" if i % 3 else "m2") == f.model) for i, _ in f.rows)
            assert [json.loads(t)["x"] for t in text] == [i for i, _ in f.rows]
        assert sorted(i for f in files for i, _ in f.rows) == list(range(10))
    finally:
        for f in files:
            os.unlink(f.path)


def test_files_split_at_the_byte_limit_and_leave_nothing_when_abandoned(tmp_path):
    lines = [("m", i, 1, b"x" * 99 + b"\n") for i in range(10)]
    files = list(write_files(iter(lines), max_lines=50_000, directory=str(tmp_path),
                             max_bytes=350))  # fmt: skip
    assert [len(f.rows) for f in files] == [3, 3, 3, 1]
    assert all(f.size <= 350 for f in files)
    for f in files:
        os.unlink(f.path)
    gen = write_files(iter(lines), max_lines=4, directory=str(tmp_path))
    first = next(gen)
    os.unlink(first.path)
    gen.close()  # the caller stopped (the spending cap): the open file is removed
    assert list(tmp_path.iterdir()) == []


def _line(custom: str, code: int | None, body: dict | None = None, error: dict | None = None):
    response = None if code is None else {"status_code": code, "request_id": "r", "body": body}
    return {"id": "batch_req_1", "custom_id": custom, "response": response, "error": error}


def test_a_responses_output_line_gives_the_synchronous_cells():
    s = spec("responses")
    body = {
        "id": "resp_1",
        "status": "completed",
        "model": "gpt-5-mini-2025-08-07",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "{}"}]}],
        "usage": {
            "input_tokens": 100,
            "output_tokens": 40,
            "total_tokens": 140,
            "input_tokens_details": {"cached_tokens": 64},
            "output_tokens_details": {"reasoning_tokens": 8},
        },
    }
    raw = json.dumps(_line(custom_id(s.job_id, 7, 2), 200, body))
    index, attempt, line = results.parse(raw, s.job_id)
    assert (index, attempt) == (7, 2)
    out = results.outcome(JobContext(s), Row(7, "", ""), attempt, line, 12.5, "batch_x")
    r = out.result
    assert r.status == COMPLETED and r.answer == "{}" and r.run_id == "resp_1"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.cached_tokens) == (
        100,
        40,
        64,
    )
    assert r.usage.reasoning_tokens == 8 and r.model == "gpt-5-mini-2025-08-07"
    assert r.attempts == 2 and r.latency_s == 12.5 and r.thread_id == "batch_x"
    assert r.cost_usd is not None and r.cost_usd > 0
    assert results.parse(raw, "another-job") is None


def test_a_chat_output_line_and_the_error_lines():
    s = replace(spec("chat"), profile={})  # no schema: a plain answer
    body = {
        "id": "chatcmpl-1",
        "model": "gpt-5-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }  # fmt: skip
    row = Row(1, "", "")
    job = JobContext(s)

    def outcome(code, body=None, error=None):
        return results.outcome(job, row, 1, _line("x", code, body, error), 1.0, "t")

    done = outcome(200, body)
    assert done.result.status == COMPLETED and done.result.answer == "hi"
    busy = outcome(429, {"error": {"message": "slow down"}})
    assert busy.result is None and "slow down" in busy.again
    assert outcome(503, {"error": {"message": "down"}}).result is None
    bad = outcome(400, {"error": {"message": "bad\nimage"}})
    assert bad.result.status == FAILED and bad.result.error == "400: bad image"
    late = outcome(None, error={"code": "batch_expired", "message": "too late"})
    assert late.result is None and late.unfinished
