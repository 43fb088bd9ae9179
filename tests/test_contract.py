"""The contract checks of the double: SDK models for answers, SDK params for requests."""

import copy
import json
import urllib.error
import urllib.request

import pytest

from tests.double.contract import ENDPOINTS, ROUTES, check_request, check_response
from tests.double.fixture import start_double


def response_body() -> dict:
    """A Responses answer as the API sends it."""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "completed_at": 1700000001,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": "Be brief.",
        "max_output_tokens": None,
        "metadata": {},
        "model": "gpt-4.1-mini",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "4", "annotations": [], "logprobs": []}
                ],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "lookup",
                "arguments": "{}",
                "status": "completed",
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 1,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 6,
        },
        "user": None,
        "conversation": {"id": "conv_1"},
    }


def test_a_real_looking_response_passes():
    assert check_response("response", response_body()) == []


def test_an_extra_key_is_reported_at_top_level_and_nested():
    body = response_body()
    body["surprise"] = 1
    body["output"][0]["content"][0]["score"] = 0.5
    messages = check_response("response", body)
    assert any("'surprise'" in m and "unexpected key" in m for m in messages), messages
    assert any("output[0].content[0].score" in m for m in messages), messages
    assert len(messages) == 2


def test_a_missing_required_key_is_reported():
    body = response_body()
    del body["created_at"]
    del body["output"][1]["call_id"]
    messages = check_response("response", body)
    assert any("missing required key 'created_at'" in m for m in messages), messages
    assert any("output[1]" in m and "'call_id'" in m for m in messages), messages


def test_a_wrong_type_is_reported():
    body = response_body()
    body["output"][0]["content"][0]["text"] = 4
    body["parallel_tool_calls"] = "yes"
    messages = check_response("response", body)
    assert any("output[0].content[0].text: expected str, got int" in m for m in messages)
    assert any("parallel_tool_calls: expected bool, got str" in m for m in messages), messages


def test_an_unknown_variant_and_a_wrong_literal_are_reported():
    body = response_body()
    body["output"][1]["type"] = "function_kall"
    body["object"] = "responses"
    messages = check_response("response", body)
    assert any("output[1]: no variant takes type='function_kall'" in m for m in messages)
    assert any(m.startswith("response: object: 'responses'") for m in messages), messages


def test_the_sdk_validation_is_the_backstop():
    # Not an object at all: the SDK's own validation says so.
    assert check_response("response", []) != []
    unknown = check_response("no-such-kind", {})
    assert unknown == ["no-such-kind: no SDK model is known for this kind"]


def test_stream_events_error_bodies_and_pages():
    run = {
        "id": "run_1",
        "object": "thread.run",
        "created_at": 1,
        "assistant_id": "asst_1",
        "thread_id": "thread_1",
        "status": "queued",
        "instructions": "",
        "model": "m",
        "parallel_tool_calls": True,
        "tools": [],
    }
    assert check_response("assistant.event", {"event": "thread.run.queued", "data": run}) == []
    wrong = check_response("assistant.event", {"event": "thread.run.nope", "data": run})
    assert any("no variant takes event='thread.run.nope'" in m for m in wrong), wrong
    error = {"error": {"message": "m", "type": "server_error", "param": None, "code": None}}
    assert check_response("error", error) == []
    assert check_response("error", {"error": "m"}) != []
    assert check_response("error", {"message": "m"}) != []
    page = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    assert check_response("thread.message.list", page) == []
    assert check_response("thread.message.list", {**page, "next": None}) != []


def test_requests_unknown_key_missing_model_and_nested_params():
    good = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    assert check_request("chat.completions.create", good) == []
    unknown = check_request("chat.completions.create", {**good, "bogus": 1})
    assert unknown == [
        "chat.completions.create: bogus: unexpected key 'bogus' "
        "(not in CompletionCreateParamsNonStreaming)"
    ]
    missing = check_request("chat.completions.create", {"messages": good["messages"]})
    assert any("missing required key 'model'" in m for m in missing), missing
    # Nested: a tool message needs its tool_call_id; stream=True picks the streaming params.
    tool = {"role": "tool", "content": "42"}
    nested = check_request("chat.completions.create", {**good, "messages": [tool], "stream": True})
    assert nested == [
        "chat.completions.create: messages[0]: missing required key 'tool_call_id' "
        "(ChatCompletionToolMessageParam)"
    ]
    items = [{"type": "function_call_output", "call_id": "c", "output": "1", "extra": 2}]
    wrong = check_request("responses.create", {"model": "m", "input": items})
    assert any("input[0].extra: unexpected key" in m for m in wrong), wrong


def test_path_params_and_query_params():
    outputs = {"tool_outputs": [{"tool_call_id": "c", "output": "1"}]}
    # thread_id is a params key of the SDK's method but goes in the URL.
    assert check_request("threads.runs.submit_tool_outputs", outputs) == []
    in_body = check_request("threads.runs.submit_tool_outputs", {**outputs, "thread_id": "t"})
    assert any("unexpected key 'thread_id'" in m for m in in_body), in_body
    assert check_request("threads.messages.list", {"limit": "100", "order": "asc"}) == []
    assert check_request("threads.messages.list", {"page": "2"}) != []
    assert check_request("threads.runs.cancel", {}) == []
    assert check_request("threads.runs.cancel", {"now": True}) != []


def test_every_route_of_the_double_is_in_the_contract_table():
    from tests.double.server import create_app

    app = create_app()
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource.canonical.startswith("/v1/") and route.method != "HEAD"
    }
    assert routes == set(ROUTES)
    assert all(e.response or e.raw for e in ENDPOINTS.values())


def _post(double, path: str, body: dict) -> tuple[int, object]:
    request = urllib.request.Request(
        f"{double.base_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-test"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            data = response.read()
            return response.status, data if body.get("stream") else json.loads(data)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_double_reports_a_bad_request_and_fails_its_block():
    good = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    with pytest.raises(AssertionError, match="bogus"), start_double() as double:
        assert _post(double, "/chat/completions", good)[0] == 200
        assert _post(double, "/chat/completions", {**good, "stream": True})[0] == 200
        assert double.contract_errors() == []  # its own answers and events conform
        status, _ = _post(double, "/chat/completions", {**copy.deepcopy(good), "bogus": 1})
        assert status == 200  # the double still answers: the contract is a test check
        (error,) = double.contract_errors()
        assert (error["method"], error["path"], error["check"]) == (
            "POST",
            "/v1/chat/completions",
            "request",
        )
        assert "bogus" in error["messages"][0]
        assert double.stats()["contract_checking"] is True
    # Off, as benchmarks run it: nothing is checked or recorded.
    with start_double(check_contract=False) as fast:
        assert _post(fast, "/chat/completions", {**good, "bogus": 1})[0] == 200
        stats = fast.stats()
        assert (stats["contract_checking"], stats["contract_errors"]) == (False, [])


def test_sse_events_are_split_named_and_checked_across_writes():
    from tests.double.watch import CheckedStream

    class Seen:
        def __init__(self) -> None:
            self.events: list = []

        def check_event(self, event, data) -> None:
            self.events.append((event, data))

        def record(self, check, messages) -> None:
            self.events.append((check, messages))

    seen = Seen()
    stream = CheckedStream(seen)
    stream.feed(b'event: thread.run.queued\ndata: {"id": ')
    assert seen.events == []  # the event is not complete yet
    stream.feed(b'"r"}\n\ndata: {"n": 1}\n\nevent: done\ndata: [DONE]\n\ndata: {oops\n\n')
    assert seen.events == [
        ("thread.run.queued", {"id": "r"}),
        (None, {"n": 1}),
        ("event", ["event None: data is not JSON"]),
    ]
