"""Which API errors halt a job and which fail one row (worker/fatal), what the retrier retries
(worker/retry), and the cells and summary of rows whose server reported no usage."""

from __future__ import annotations

import httpx2
import openai
import pytest

from worker.fatal import HALT_ACCESS, HALT_QUOTA, HALT_REQUEST, classify, one_line
from worker.models import Result, Usage
from worker.retry import is_retryable, short_error

OPENAI = "https://api.openai.com/v1"


def error(status, code=None, type="invalid_request_error", param=None, message="m", headers=None):
    request = httpx2.Request("POST", f"{OPENAI}/responses")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    body = {"message": message, "type": type, "param": param, "code": code}
    return openai.APIStatusError(message, response=response, body=body)


def halt(exc, provider="responses", base_url=""):
    found = classify(exc, provider=provider, base_url=base_url, model="gpt-x")
    return found and found.status


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (error(401, "invalid_api_key"), HALT_ACCESS),
        (error(403, "model_not_found"), HALT_ACCESS),
        (error(404, "model_not_found"), HALT_ACCESS),
        (error(429, "insufficient_quota", type="insufficient_quota"), HALT_QUOTA),
        (error(429, "billing_hard_limit_reached", type="requests"), HALT_QUOTA),
        (error(429, "organization_spend_limit_exceeded"), HALT_QUOTA),
        (error(429, "project_spend_limit_exceeded"), HALT_QUOTA),
        (error(429, None, type="credit_balance_exhausted"), HALT_QUOTA),
        (error(400, "unsupported_parameter", param="temperature"), HALT_REQUEST),
        (error(400, "unsupported_value", param="service_tier"), HALT_REQUEST),
        (error(400, "integer_below_min_value", param="max_output_tokens"), HALT_REQUEST),
        # One row's own content, or a speed limit: not the job's.
        (error(400, "context_length_exceeded", param="input"), None),
        (error(400, "content_filter", param="messages"), None),
        (error(400, None), None),
        (error(429, "rate_limit_exceeded", type="requests"), None),
        (error(404, None, message="Conversation not found", param="conversation"), None),
        (error(500, None, type="server_error"), None),
    ],
)
def test_classify(exc, expected):
    assert halt(exc) == expected


def test_the_assistants_api_at_openai_is_gone_but_not_elsewhere():
    gone = classify(error(404), provider="assistants", base_url="", model="m")
    assert gone and gone.exit_code == 2 and "shut down" in gone.message
    assert "--provider responses" in gone.message
    assert halt(error(410), "assistants", OPENAI) == HALT_ACCESS
    assert halt(error(404), "assistants", "http://127.0.0.1:8080/v1") is None


def test_messages_name_the_cause_and_the_fix():
    key = classify(error(401, "invalid_api_key"), provider="chat", base_url="", model="m")
    assert "OPENAI_API_KEY" in key.message and key.exit_code == 2
    model = classify(error(404, "model_not_found"), provider="chat", base_url="", model="x1")
    assert "'x1'" in model.message and "platform.openai.com/docs/models" in model.message
    local = classify(
        error(404, "model_not_found"), provider="chat", base_url="http://h:1/v1", model="x1"
    )
    assert "http://h:1/v1/models" in local.message
    quota = classify(error(429, "insufficient_quota"), provider="chat", base_url="", model="m")
    assert quota.exit_code == 3 and "spending limit" in quota.message


def test_retrying():
    assert is_retryable(error(429, "rate_limit_exceeded"))
    assert is_retryable(error(503))
    assert not is_retryable(error(429, "insufficient_quota", type="insufficient_quota"))
    assert not is_retryable(error(503, headers={"x-should-retry": "false"}))
    assert is_retryable(error(409, headers={"x-should-retry": "true"}))
    assert not is_retryable(error(400))


def test_a_multi_line_server_message_becomes_one_short_line():
    trace = "Traceback (most recent call last):\n  File 'x.py', line 1\n" + "  boom\n" * 400
    cell = short_error(error(500, message=trace))
    assert "\n" not in cell and len(cell) <= 500 and cell.startswith("HTTP 500: Traceback")
    assert one_line("a\n\n b\tc") == "a b c"


def test_no_usage_reported_gives_empty_cells_not_zeros():
    cells = Result(0, "completed", "4", usage=Usage(reported=False)).columns()
    assert [cells[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")] == [""] * 3
    summed = Usage(1, 2, 3)
    summed.add(Usage(reported=False))
    assert not summed.reported
    back = Result.from_json(Result(0, "completed", usage=Usage(reported=False)).to_json())
    assert back.usage.reported is False
    assert Result(0, "completed", usage=Usage(5, 6, 11)).columns()["total_tokens"] == "11"


def test_the_summary_counts_rows_without_usage(tmp_path):
    from jobs import report

    path = tmp_path / "a.csv"
    path.write_text(
        "id,question,status,answer,prompt_tokens,completion_tokens,total_tokens,attempts\n"
        "1,q,completed,a,,,,1\n"
        "2,q,completed,a,3,4,7,1\n"
        "3,q,skipped,,0,0,0,0\n",
        encoding="utf-8",
    )
    summary = report.summarize(report.load(path))
    assert summary.tokens["total_tokens"] == 7
    assert any("1 row had no usage reported" in n for n in summary.notes), summary.notes


def test_a_fastapi_detail_body_reaches_the_error_cell():
    request = httpx2.Request("POST", "http://127.0.0.1:1/v1/responses")
    response = httpx2.Response(404, request=request)
    exc = openai.APIStatusError("Error code: 404", response=response, body={"detail": "No m"})
    assert short_error(exc) == "HTTP 404: No m"


def test_a_server_without_the_conversations_api_halts_a_responses_job():
    request = httpx2.Request("POST", "http://127.0.0.1:4000/v1/conversations")
    response = httpx2.Response(404, request=request)
    exc = openai.APIStatusError("Not Found", response=response, body={"detail": "Not Found"})
    found = classify(exc, provider="responses", base_url="http://127.0.0.1:4000/v1", model="m")
    assert found and found.exit_code == 2 and "--provider chat" in found.message
    assert classify(exc, provider="chat", base_url="", model="m") is None
