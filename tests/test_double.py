"""The OpenAI API double, driven by the real openai SDK over real HTTP on loopback."""

import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Literal

import openai
import pydantic
import pytest
from openai import OpenAI

from tests.double.expect import (
    answer_for,
    count_tokens,
    final_answer,
    marked_calls,
    partial_answer,
    structured_answer,
    tool_answer,
    tool_round_usage,
    usage_for,
    wrong_schema_answer,
)
from tests.double.fixture import REPO_ROOT, start_double

# The Assistants API is deprecated in the SDK; the project still has to support it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def double():
    with start_double() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(double):
    double.configure(latency=0, rate_429=0, rate_500=0, seed=0, rpm=0, tpm=0)
    double.reset()


@pytest.fixture
def client(double):
    with OpenAI(api_key="sk-test", base_url=double.base_url, max_retries=0) as sdk:
        yield sdk


def wait_idle(double, timeout: float = 5.0) -> dict:
    """Stats once no request is in flight any more (server tasks have ended)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = double.stats()
        if stats["in_flight"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def chat(client, question: str, **kwargs):
    return client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": question}], **kwargs
    )


# --- expect ---


def test_expect_rules_by_hand():
    assert count_tokens("") == 1
    assert count_tokens(" two  words\n") == 2
    assert answer_for("What is 2+2?", 3) == "[turn 3] answer: What is 2+2?"
    # "Be brief." = 2 words + 3, "Hi?" = 1 word + 3; the answer has 3 words.
    assert usage_for(["Be brief.", "Hi?"], "[turn 1] answer: Hi?") == (9, 4)
    assert usage_for(["Hi?"], "a b", reasoning_tokens=5) == (4, 7)
    assert partial_answer("abcdef") == "abc"
    assert tool_answer("x", ["1", "2"]) == "x [tools: 1,2]"


# --- plain HTTP ---


def test_missing_bearer_token_is_401(double):
    request = urllib.request.Request(
        f"{double.base_url}/chat/completions",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=5)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["error"]["code"] == "invalid_api_key"


# --- Responses + Conversations ---


def test_responses_use_and_extend_the_conversation(client, double):
    conversation = client.conversations.create(
        items=[
            {"type": "message", "role": "user", "content": "hello"},
            {"type": "message", "role": "assistant", "content": "hi there"},
        ]
    )
    assert conversation.id.startswith("conv_")
    assert conversation.object == "conversation"

    first = client.responses.create(
        model="gpt-test",
        input="What is 2+2?",
        conversation=conversation.id,
        instructions="Be brief.",
    )
    answer1 = answer_for("What is 2+2?", 2)
    assert first.id.startswith("resp_")
    assert first.status == "completed"
    assert first.model == "gpt-test"
    assert first.conversation.id == conversation.id
    assert first.output[0].id.startswith("msg_")
    assert first.output_text == answer1
    prompt, completion = usage_for(["Be brief.", "hello", "hi there", "What is 2+2?"], answer1)
    assert (first.usage.input_tokens, first.usage.output_tokens) == (prompt, completion)
    assert first.usage.total_tokens == prompt + completion

    second = client.responses.create(
        model="gpt-test",
        input=[{"role": "user", "content": "And 3+3?"}],
        conversation={"id": conversation.id},
    )
    answer2 = answer_for("And 3+3?", 3)
    assert second.output_text == answer2
    history = ["hello", "hi there", "What is 2+2?", answer1, "And 3+3?"]
    assert second.usage.input_tokens == usage_for(history, answer2)[0]
    assert double.stats()["requests"] == {"conversation_create": 1, "response": 2}


def test_responses_without_conversation_and_usage_details(client):
    question = "Why? [[cached:4]] [[reasoning:5]]"
    response = client.responses.create(
        model="gpt-test",
        input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "message", "role": "assistant", "content": "b"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": question}],
            },
        ],
    )
    answer = answer_for(question, 2)
    assert response.output_text == answer
    prompt, completion = usage_for(["a", "b", question], answer, reasoning_tokens=5)
    assert response.usage.input_tokens == prompt
    assert response.usage.output_tokens == completion
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 5


def test_responses_failed_and_incomplete(client):
    conversation = client.conversations.create()
    failed = client.responses.create(model="m", input="boom [[fail]]", conversation=conversation.id)
    assert failed.status == "failed"
    assert failed.error.code == "server_error"
    assert failed.output_text == ""
    assert failed.usage is None

    question = "cut short please [[incomplete]]"
    cut = client.responses.create(model="m", input=question, conversation=conversation.id)
    # The failed exchange was not kept, so this is turn 1.
    partial = partial_answer(answer_for(question, 1))
    assert cut.status == "incomplete"
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output_text == partial
    assert cut.usage.output_tokens == count_tokens(partial)


def test_responses_reject_unknown_conversation_and_streaming(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="m", input="q", conversation="conv_missing")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input="q", stream=True)


# --- Chat Completions ---


def test_chat_completion_counts_the_whole_history(client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "two"},
    ]
    completion = client.chat.completions.create(model="gpt-chat", messages=messages)
    answer = answer_for("two", 2)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-chat"
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (answer, "stop")
    prompt, tokens = usage_for([m["content"] for m in messages], answer)
    assert completion.usage.prompt_tokens == prompt
    assert completion.usage.completion_tokens == tokens
    assert completion.usage.total_tokens == prompt + tokens


def test_chat_markers(client, double):
    with pytest.raises(openai.BadRequestError, match="injected failure"):
        chat(client, "x [[fail]]")
    cut = chat(client, "a longer question [[incomplete]]")
    partial = partial_answer(answer_for("a longer question [[incomplete]]", 1))
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == partial
    assert cut.usage.completion_tokens == count_tokens(partial)

    detailed = chat(client, "q [[cached:3]] [[reasoning:2]]")
    assert detailed.usage.prompt_tokens_details.cached_tokens == 3
    assert detailed.usage.completion_tokens_details.reasoning_tokens == 2
    assert detailed.usage.completion_tokens == count_tokens(detailed.choices[0].message.content) + 2
    assert double.stats()["questions"] == {
        "x [[fail]]": 1,
        "a longer question [[incomplete]]": 1,
        "q [[cached:3]] [[reasoning:2]]": 1,
    }


def test_chat_stream_with_usage(client):
    chunks = list(chat(client, "stream me", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = answer_for("stream me", 1)
    assert text == answer
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == usage_for(["stream me"], answer)[0]


# --- Assistants ---


def test_assistants_poll_flow_and_message_pages(client, double):
    assistant = client.beta.assistants.create(model="gpt-asst", instructions="You help.", name="a")
    assert assistant.id.startswith("asst_")
    assert client.beta.assistants.retrieve(assistant.id).model == "gpt-asst"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    assert thread.id.startswith("thread_")

    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    answer1 = answer_for("first", 1)
    assert run.id.startswith("run_")
    assert (run.status, run.model, run.instructions) == ("completed", "gpt-asst", "You help.")
    assert run.completed_at is not None
    prompt, completion = usage_for(["You help.", "first"], answer1)
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (prompt, completion)

    client.beta.threads.messages.create(thread.id, role="user", content="second")
    run2 = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, model="gpt-other", instructions="Other."
    )
    answer2 = answer_for("second", 2)
    assert run2.model == "gpt-other"
    assert run2.usage.prompt_tokens == usage_for(["Other.", "first", answer1, "second"], answer2)[0]

    newest = client.beta.threads.messages.list(thread.id, limit=1)
    assert newest.has_more
    assert newest.data[0].content[0].text.value == answer2
    assert newest.data[0].run_id == run2.id
    assert newest.data[0].assistant_id == assistant.id
    everything = [
        m.content[0].text.value
        for m in client.beta.threads.messages.list(thread.id, order="asc", limit=1)
    ]
    assert everything == ["first", answer1, "second", answer2]
    only_run = client.beta.threads.messages.list(thread.id, run_id=run.id)
    assert [m.role for m in only_run.data] == ["assistant"]

    stats = double.stats()
    assert stats["requests"]["run_create"] == 2
    assert stats["requests"]["message_list"] == 6  # one per page
    assert stats["questions"] == {"first": 1, "second": 1}


def test_create_and_run_stream(client):
    assistant = client.beta.assistants.create(model="gpt-asst")
    events = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "streamed question"}]},
            stream=True,
        )
    )
    assert [e.event for e in events] == [
        "thread.created",
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.completed",
    ]
    answer = answer_for("streamed question", 1)
    assert events[6].data.delta.content[0].text.value == answer
    run = events[-1].data
    assert run.thread_id == events[0].data.id
    assert run.usage.total_tokens == sum(usage_for(["streamed question"], answer))
    listed = client.beta.threads.messages.list(run.thread_id)
    assert [m.content[0].text.value for m in listed.data] == [answer, "streamed question"]


def test_run_stream_on_existing_thread(client):
    assistant = client.beta.assistants.create(model="gpt-asst", instructions="Hi.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "one"}])
    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    stream = client.beta.threads.runs.create(
        thread.id,
        assistant_id=assistant.id,
        additional_messages=[{"role": "user", "content": "two"}],
        stream=True,
    )
    events = list(stream)
    assert events[0].event == "thread.run.created"
    assert events[-1].event == "thread.run.completed"
    assert events[-2].data.content[0].text.value == answer_for("two", 2)
    # The SDK's event-handler helper accumulates the same stream.
    with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_messages=[{"role": "user", "content": "three"}],
    ) as helper:
        helper.until_done()
        assert helper.get_final_run().status == "completed"
        final = helper.get_final_messages()[0].content[0].text.value
    assert final == answer_for("three", 3)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("marker", "status"),
    [
        ("fail", "failed"),
        ("incomplete", "incomplete"),
        ("expired", "expired"),
        ("cancelled", "cancelled"),
    ],
)
def test_run_outcome_markers(client, double, marker, status, stream):
    assistant = client.beta.assistants.create(model="gpt-asst")
    question = f"outcome for this [[{marker}]]"
    thread_spec = {"messages": [{"role": "user", "content": question}]}
    if stream:
        events = list(
            client.beta.threads.create_and_run(
                assistant_id=assistant.id, thread=thread_spec, stream=True
            )
        )
        assert events[-1].event == f"thread.run.{status}"
        run = events[-1].data
    else:
        run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread=thread_spec)
    assert run.status == status
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(run.thread_id).data]
    if status == "failed":
        assert (run.last_error.code, run.last_error.message) == (
            "server_error",
            "Injected failure.",
        )
        assert run.failed_at is not None
    if status == "incomplete":
        partial = partial_answer(answer_for(question, 1))
        assert run.incomplete_details.reason == "max_completion_tokens"
        assert texts == [partial, question]
        assert run.usage.completion_tokens == count_tokens(partial)
    else:
        assert texts == [question]
    if status == "cancelled":
        assert run.cancelled_at is not None
    assert double.stats()["questions"] == {question: 1}


def test_requires_action_then_tool_outputs(client, double):
    assistant = client.beta.assistants.create(model="gpt-asst", instructions="Use tools.")
    question = "look it up [[requires_action]]"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == ("lookup", '{"q": "x"}')
    assert double.stats()["questions"] == {}  # not terminal yet

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "42"}]
    )
    answer = tool_answer(answer_for(question, 1), ["42"])
    assert done.status == "completed"
    assert done.required_action is None
    assert done.usage.completion_tokens == count_tokens(answer)
    newest = client.beta.threads.messages.list(thread.id).data[0]
    assert newest.content[0].text.value == answer
    assert double.stats()["requests"]["submit_tool_outputs"] == 1


def test_requires_action_streamed_both_ways(client):
    assistant = client.beta.assistants.create(model="gpt-asst")
    question = "tool please [[requires_action]]"
    events = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": question}]},
            stream=True,
        )
    )
    assert events[-1].event == "thread.run.requires_action"
    run = events[-1].data
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    resumed = list(
        client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=run.thread_id,
            tool_outputs=[
                {"tool_call_id": call_id, "output": "a"},
                {"tool_call_id": call_id, "output": "b"},
            ],
            stream=True,
        )
    )
    assert resumed[0].event == "thread.run.queued"
    assert resumed[-1].event == "thread.run.completed"
    assert resumed[-2].data.content[0].text.value == tool_answer(
        answer_for(question, 1), ["a", "b"]
    )


def test_never_run_is_cancelled(client, double):
    assistant = client.beta.assistants.create(model="gpt-asst")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hang [[never]]"}])
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    assert run.status == "queued"
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "in_progress"
    with pytest.raises(openai.BadRequestError):  # one active run per thread
        client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    assert client.beta.threads.runs.cancel(run.id, thread_id=thread.id).status == "cancelling"
    cancelled = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert cancelled.status == "cancelled"
    assert cancelled.usage is None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert double.stats()["requests"]["run_cancel"] == 2


def test_never_stream_is_cancelled_by_another_request(client):
    assistant = client.beta.assistants.create(model="gpt-asst")
    stream = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hang [[never]]"}]},
        stream=True,
    )
    events = []
    for event in stream:
        events.append(event.event)
        if event.event == "thread.run.in_progress":
            run = event.data
            client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    assert events[-2:] == ["thread.run.in_progress", "thread.run.cancelled"]


def test_never_ends_server_tasks_when_clients_go_away(client, double):
    assistant = client.beta.assistants.create(model="gpt-asst")
    stream = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hang [[never]]"}]},
        stream=True,
    )
    for event in stream:
        if event.event == "thread.run.in_progress":
            break
    stream.close()
    impatient = client.with_options(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        impatient.responses.create(model="m", input="hang [[never]]")
    with pytest.raises(openai.APITimeoutError):
        chat(impatient, "hang [[never]]")
    stats = wait_idle(double)
    assert stats["in_flight"] == 0
    assert stats["questions"] == {}


# --- function tools and structured answers ---

EVAL_ARGS = '{"expression": "6*7"}'
# Two offered tools in marker order, and a marker for a tool nobody offers (ignored).
TOOL_QUESTION = f"Compute [[call:evaluate:{EVAL_ARGS}]] then [[call:lookup]] [[call:nobody]]"


def assistant_turn(message) -> dict:
    """An answer sent back as history: the keys an assistant message param takes."""
    dumped = message.model_dump(exclude_none=True)
    return {k: v for k, v in dumped.items() if k in ("role", "content", "tool_calls")}


RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "evaluate",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        "strict": False,
    },
    {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {}},
        "strict": False,
    },
]
CHAT_TOOLS = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["parameters"]}}
    for t in RESPONSES_TOOLS
]
SCHEMA = {
    "type": "object",
    "properties": {
        "problem": {"type": "string"},
        "difficulty": {"type": "string", "enum": ["easy", "hard"]},
        "steps": {"type": "integer"},
        "score": {"type": "number"},
        "checked": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "extra": {"type": "object"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["problem", "difficulty", "steps", "note"],
    "additionalProperties": False,
}
CHAT_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "practice", "schema": SCHEMA, "strict": True},
}


def test_tool_and_schema_rules_by_hand():
    assert marked_calls(TOOL_QUESTION) == [
        ("evaluate", EVAL_ARGS),
        ("lookup", "{}"),
        ("nobody", "{}"),
    ]
    assert marked_calls('[[call:f:{"a": [1]}]] [[callagain]]') == [("f", '{"a": [1]}')]
    # Prompt as usage_for; completion: 2 words of arguments + 1 for "{}".
    assert tool_round_usage(["Be brief.", "Hi?"], [EVAL_ARGS, "{}"]) == (9, 3)
    answer = answer_for("q", 2)
    assert structured_answer(SCHEMA, "q", 2) == {
        "problem": f"problem: {answer}",
        "difficulty": "easy",
        "steps": 2,
        "score": 2.5,
        "checked": True,
        "tags": [],
        "extra": {},
        "note": f"note: {answer}",
    }
    assert wrong_schema_answer(SCHEMA) == {"problem": 0, "difficulty": 0, "note": 0}
    assert final_answer("q", 1, outputs=["a"]) == tool_answer(answer_for("q", 1), ["a"])
    assert final_answer("q [[badjson]]", 1, schema=SCHEMA) == "not json {"
    assert final_answer("q [[badjson]]", 1) == answer_for("q [[badjson]]", 1)
    assert json.loads(final_answer("ü", 1, schema=SCHEMA, outputs=["x"]))["problem"].endswith("ü")


def test_responses_tool_round_trip_in_a_conversation(client, double):
    conversation = client.conversations.create()
    ask = dict(model="m", conversation=conversation.id, instructions="Be brief.")
    first = client.responses.create(input=TOOL_QUESTION, tools=RESPONSES_TOOLS, **ask)
    assert first.status == "completed"
    assert first.output_text == ""
    calls = first.output
    assert [(c.type, c.name, c.arguments, c.status) for c in calls] == [
        ("function_call", "evaluate", EVAL_ARGS, "completed"),
        ("function_call", "lookup", "{}", "completed"),
    ]
    assert all(c.id.startswith("fc_") and c.call_id.startswith("call_") for c in calls)
    context = ["Be brief.", TOOL_QUESTION]
    assert (first.usage.input_tokens, first.usage.output_tokens) == tool_round_usage(
        context, [EVAL_ARGS, "{}"]
    )

    bad = [{"type": "function_call_output", "call_id": "call_nope", "output": "1"}]
    with pytest.raises(openai.BadRequestError, match="call_nope"):
        client.responses.create(input=bad, tools=RESPONSES_TOOLS, **ask)
    with pytest.raises(openai.BadRequestError, match="No tool output"):  # calls unanswered
        client.responses.create(input="next question", **ask)

    outputs = [  # sent in reverse: the answer still lists them in call order
        {"type": "function_call_output", "call_id": calls[1].call_id, "output": "1"},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "42"},
    ]
    final = client.responses.create(input=outputs, tools=RESPONSES_TOOLS, **ask)
    answer = tool_answer(answer_for(TOOL_QUESTION, 1), ["42", "1"])
    assert final.output_text == answer
    context += [EVAL_ARGS, "{}", "1", "42"]
    assert (final.usage.input_tokens, final.usage.output_tokens) == usage_for(context, answer)

    # The calls and outputs stay in the conversation for the next turn.
    after = client.responses.create(model="m", conversation=conversation.id, input="more?")
    assert after.output_text == answer_for("more?", 2)
    assert after.usage.input_tokens == usage_for([*context[1:], answer, "more?"], "")[0]
    stats = double.stats()
    assert (stats["tool_rounds"], stats["tool_outputs"]) == ({"responses": 1}, {"responses": 1})
    assert stats["questions"] == {TOOL_QUESTION: 1, "more?": 1}


def test_responses_tool_round_without_conversation_and_call_again(client, double):
    # Markers are ignored when the request offers no tools.
    plain = client.responses.create(model="m", input=TOOL_QUESTION)
    assert plain.output_text == answer_for(TOOL_QUESTION, 1)

    question = "[[call:lookup:{}]] please"
    items = [{"type": "message", "role": "user", "content": question}]
    first = client.responses.create(model="m", input=items, tools=RESPONSES_TOOLS)
    # by_alias: the wire names (`async`, not the SDK's `async_`); no nulls the API refuses.
    items += [item.model_dump(by_alias=True, exclude_none=True) for item in first.output]
    items.append(
        {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "7"}
    )
    final = client.responses.create(model="m", input=items, tools=RESPONSES_TOOLS)
    assert final.output_text == tool_answer(answer_for(question, 1), ["7"])

    again = "[[call:lookup]] [[callagain]]"
    conversation = client.conversations.create()
    response = client.responses.create(
        model="m", conversation=conversation.id, input=again, tools=RESPONSES_TOOLS
    )
    seen = set()
    for _ in range(3):
        (call,) = response.output
        assert call.type == "function_call" and call.call_id not in seen
        seen.add(call.call_id)
        response = client.responses.create(
            model="m",
            conversation=conversation.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "x"}],
            tools=RESPONSES_TOOLS,
        )
    assert response.output[0].type == "function_call"
    stats = double.stats()
    assert stats["tool_rounds"] == {"responses": 5}
    assert stats["tool_outputs"] == {"responses": 4}


def test_responses_structured_answers(client):
    text = {"format": {"type": "json_schema", "name": "practice", "schema": SCHEMA, "strict": True}}
    question = "Make a problem"
    response = client.responses.create(model="m", input=question, text=text)
    assert json.loads(response.output_text) == structured_answer(SCHEMA, question, 1)
    assert response.usage.output_tokens == count_tokens(response.output_text)
    bad = client.responses.create(model="m", input="x [[badjson]]", text=text)
    assert bad.output_text == "not json {"
    wrong = client.responses.create(model="m", input="x [[wrongschema]]", text=text)
    assert json.loads(wrong.output_text) == {"problem": 0, "difficulty": 0, "note": 0}


def test_chat_tool_round_trip_then_structured_answer(client, double):
    messages = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": TOOL_QUESTION},
    ]
    first = client.chat.completions.create(model="m", messages=messages, tools=CHAT_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [(c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("function", "evaluate", EVAL_ARGS),
        ("function", "lookup", "{}"),
    ]
    assert all(c.id.startswith("call_") for c in calls)
    context = ["Use tools.", TOOL_QUESTION]
    usage = first.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == tool_round_usage(
        context, [EVAL_ARGS, "{}"]
    )

    messages.append(assistant_turn(choice.message))
    results = [
        {"role": "tool", "tool_call_id": calls[0].id, "content": "42"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "1"},
    ]
    with pytest.raises(openai.BadRequestError, match="No tool output"):
        client.chat.completions.create(model="m", messages=messages + results[:1])
    unknown = {"role": "tool", "tool_call_id": "call_nope", "content": "?"}
    with pytest.raises(openai.BadRequestError, match="call_nope"):
        client.chat.completions.create(model="m", messages=[*messages, *results, unknown])
    final = client.chat.completions.create(model="m", messages=messages + results, tools=CHAT_TOOLS)
    answer = tool_answer(answer_for(TOOL_QUESTION, 1), ["42", "1"])
    assert (final.choices[0].finish_reason, final.choices[0].message.content) == ("stop", answer)
    context += [EVAL_ARGS, "{}", "42", "1"]
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == usage_for(context, answer)

    # With a schema the final answer is structured and the outputs are not appended.
    shaped = client.chat.completions.create(
        model="m", messages=messages + results, tools=CHAT_TOOLS, response_format=CHAT_FORMAT
    )
    text = shaped.choices[0].message.content
    assert json.loads(text) == structured_answer(SCHEMA, TOOL_QUESTION, 1)
    assert shaped.usage.completion_tokens == count_tokens(text)
    stats = double.stats()
    assert stats["tool_rounds"] == {"chat": 1}
    assert stats["tool_outputs"] == {"chat": 2}


def test_chat_call_again_and_streamed_tool_calls(client, double):
    messages = [{"role": "user", "content": "[[call:lookup:{}]] [[callagain]]"}]
    for _ in range(2):
        message = (
            client.chat.completions.create(model="m", messages=messages, tools=CHAT_TOOLS)
            .choices[0]
            .message
        )
        (call,) = message.tool_calls
        messages.append(assistant_turn(message))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "x"})
    chunks = list(
        client.chat.completions.create(model="m", messages=messages, tools=CHAT_TOOLS, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    streamed = chunks[1].choices[0].delta.tool_calls[0]
    assert (streamed.index, streamed.function.name, streamed.function.arguments) == (
        0,
        "lookup",
        "{}",
    )
    assert double.stats()["tool_rounds"] == {"chat": 3}


def test_chat_structured_answers(client):
    class Practice(pydantic.BaseModel):
        problem: str
        difficulty: Literal["easy", "hard"]
        steps: int

    question = "Make one"
    parsed = client.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": question}], response_format=Practice
    )
    answer = answer_for(question, 1)
    assert parsed.choices[0].message.parsed == Practice(
        problem=f"problem: {answer}", difficulty="easy", steps=1
    )
    bad = chat(client, "x [[badjson]]", response_format=CHAT_FORMAT)
    assert bad.choices[0].message.content == "not json {"
    wrong = chat(client, "x [[wrongschema]]", response_format=CHAT_FORMAT)
    assert json.loads(wrong.choices[0].message.content) == wrong_schema_answer(SCHEMA)
    with pytest.raises(pydantic.ValidationError):
        client.chat.completions.parse(
            model="m",
            messages=[{"role": "user", "content": "x [[wrongschema]]"}],
            response_format=Practice,
        )


def test_assistants_tool_round_trip_sums_usage(client, double):
    assistant = client.beta.assistants.create(
        model="gpt-asst", instructions="Use tools.", tools=CHAT_TOOLS
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": TOOL_QUESTION}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    assert run.usage is None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("evaluate", EVAL_ARGS),
        ("lookup", "{}"),
    ]
    with pytest.raises(openai.BadRequestError):  # one call left unanswered
        client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": calls[0].id, "output": "42"}],
        )
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[
            {"tool_call_id": calls[1].id, "output": "1"},
            {"tool_call_id": calls[0].id, "output": "42"},
        ],
    )
    answer = tool_answer(answer_for(TOOL_QUESTION, 1), ["42", "1"])
    assert done.status == "completed"
    assert client.beta.threads.messages.list(thread.id).data[0].content[0].text.value == answer
    context = ["Use tools.", TOOL_QUESTION]
    rounds = [
        tool_round_usage(context, [EVAL_ARGS, "{}"]),
        usage_for([*context, EVAL_ARGS, "{}", "42", "1"], answer),
    ]
    assert done.usage.prompt_tokens == sum(r[0] for r in rounds)
    assert done.usage.completion_tokens == sum(r[1] for r in rounds)
    stats = double.stats()
    assert (stats["tool_rounds"], stats["tool_outputs"]) == ({"assistants": 1}, {"assistants": 1})
    assert stats["questions"] == {TOOL_QUESTION: 1}


def test_assistants_streamed_submit_and_call_again(client, double):
    assistant = client.beta.assistants.create(model="gpt-asst")  # the run brings the tools
    question = "[[call:lookup]] go"
    thread = {"messages": [{"role": "user", "content": question}]}
    events = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread=thread, tools=CHAT_TOOLS, stream=True
        )
    )
    assert events[-1].event == "thread.run.requires_action"
    run = events[-1].data
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    resumed = list(
        client.beta.threads.runs.submit_tool_outputs(
            run.id,
            thread_id=run.thread_id,
            tool_outputs=[{"tool_call_id": call.id, "output": "7"}],
            stream=True,
        )
    )
    assert [e.event for e in resumed[:2]] == ["thread.run.queued", "thread.run.in_progress"]
    assert resumed[-1].event == "thread.run.completed"
    answer = tool_answer(answer_for(question, 1), ["7"])
    assert resumed[-2].data.content[0].text.value == answer
    assert resumed[-1].data.usage.completion_tokens == count_tokens("{}") + count_tokens(answer)

    again = "[[call:lookup]] [[callagain]]"
    events = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": again}]},
            tools=CHAT_TOOLS,
            stream=True,
        )
    )
    run = events[-1].data
    for _ in range(2):
        (call,) = run.required_action.submit_tool_outputs.tool_calls
        resumed = list(
            client.beta.threads.runs.submit_tool_outputs(
                run.id,
                thread_id=run.thread_id,
                tool_outputs=[{"tool_call_id": call.id, "output": "x"}],
                stream=True,
            )
        )
        assert resumed[-1].event == "thread.run.requires_action"
        run = resumed[-1].data
        assert run.required_action.submit_tool_outputs.tool_calls[0].id != call.id
    assert client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id).status == "cancelling"
    stats = double.stats()
    assert stats["tool_rounds"] == {"assistants": 4}
    assert stats["tool_outputs"] == {"assistants": 3}


def test_assistants_structured_answers(client):
    assistant = client.beta.assistants.create(model="gpt-asst", response_format=CHAT_FORMAT)
    plain = client.beta.assistants.create(model="gpt-asst")
    texts = {}
    for question, owner, run_format in [
        ("shape it", assistant, None),
        ("shape it [[badjson]]", assistant, None),
        ("shape it [[wrongschema]]", plain, CHAT_FORMAT),  # the run's format counts
    ]:
        extra = {"response_format": run_format} if run_format else {}
        run = client.beta.threads.create_and_run_poll(
            assistant_id=owner.id,
            thread={"messages": [{"role": "user", "content": question}]},
            **extra,
        )
        assert run.status == "completed"
        message = client.beta.threads.messages.list(run.thread_id).data[0]
        texts[question] = message.content[0].text.value
        assert run.usage.completion_tokens == count_tokens(texts[question])
    assert json.loads(texts["shape it"]) == structured_answer(SCHEMA, "shape it", 1)
    assert texts["shape it [[badjson]]"] == "not json {"
    assert json.loads(texts["shape it [[wrongschema]]"]) == wrong_schema_answer(SCHEMA)


# --- transport faults and limits ---


def test_429_500_reset_markers_per_question_and_kind(client, double):
    question = "retry me [[429:2:3]] [[500:1]] [[reset:1]]"
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            chat(client, question)
        headers = caught.value.response.headers
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "3000")
        assert caught.value.body == {
            "message": "Rate limit reached",
            "type": "requests",
            "code": "rate_limit_exceeded",
            "param": None,
        }
    with pytest.raises(openai.InternalServerError):
        chat(client, question)
    with pytest.raises(openai.APIConnectionError):
        chat(client, question)
    assert chat(client, question).choices[0].message.content == answer_for(question, 1)
    # The responses endpoint counts the same question separately.
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="m", input=question)
    stats = double.stats()
    assert (stats["status_429"], stats["status_500"], stats["resets"]) == (3, 1, 1)
    assert stats["requests"] == {"chat": 5, "response": 1}
    assert stats["questions"] == {question: 1}


def test_400_marker_always_fails(client):
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            chat(client, "bad [[400]]")


def test_markers_on_conversation_create_and_assistant_runs(client):
    items = [{"type": "message", "role": "user", "content": "start [[429:1]]"}]
    with pytest.raises(openai.RateLimitError):
        client.conversations.create(items=items)
    assert client.conversations.create(items=items).id.startswith("conv_")

    assistant = client.beta.assistants.create(model="gpt-asst")
    thread = client.beta.threads.create()
    extra = [{"role": "user", "content": "run [[500:1]]"}]
    with pytest.raises(openai.InternalServerError):
        client.beta.threads.runs.create(
            thread.id, assistant_id=assistant.id, additional_messages=extra
        )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, additional_messages=extra
    )
    assert run.status == "completed"
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(thread.id).data]
    # The rejected call added nothing to the thread.
    assert texts == [answer_for("run [[500:1]]", 1), "run [[500:1]]"]


def test_latency_and_sleep_marker(client, double):
    started = time.monotonic()
    chat(client, "slow [[sleep:0.3]]")
    assert time.monotonic() - started >= 0.3

    double.configure(latency=0.2)
    started = time.monotonic()
    client.responses.create(model="m", input="q")
    assert time.monotonic() - started >= 0.2

    assistant = client.beta.assistants.create(model="gpt-asst")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "q"}])
    started = time.monotonic()
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    assert time.monotonic() - started < 0.2  # creating a run does not wait
    response = client.beta.threads.runs.with_raw_response.retrieve(run.id, thread_id=thread.id)
    assert response.parse().status == "in_progress"
    assert 1 <= int(response.headers["openai-poll-after-ms"]) <= 201
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.status == "completed"
    assert time.monotonic() - started >= 0.2


def test_random_faults_follow_the_seed(client, double):
    double.configure(rate_429=0.3, rate_500=0.2, seed=7)
    rng = random.Random(7)
    expected, seen = [], []
    for i in range(30):
        draw = rng.random()
        expected.append(429 if draw < 0.3 else 500 if draw < 0.5 else 200)
        try:
            chat(client, f"q{i}")
            seen.append(200)
        except openai.APIStatusError as error:
            seen.append(error.status_code)
    assert seen == expected
    stats = double.stats()
    assert (stats["status_429"], stats["status_500"]) == (expected.count(429), expected.count(500))


def test_rpm_limit_and_headers(client, double):
    double.configure(rpm=2)
    raw = client.chat.completions.with_raw_response
    for remaining in ("1", "0"):
        response = raw.create(model="m", messages=[{"role": "user", "content": "q"}])
        assert response.headers["x-ratelimit-limit-requests"] == "2"
        assert response.headers["x-ratelimit-remaining-requests"] == remaining
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client, "q")
    headers = caught.value.response.headers
    assert 59_000 < int(headers["retry-after-ms"]) <= 60_000
    assert headers["retry-after"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_tpm_limit(client, double):
    question = "four words in this"
    tokens = sum(usage_for([question], answer_for(question, 1)))
    double.configure(tpm=tokens * 2)
    response = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": question}]
    )
    assert response.headers["x-ratelimit-remaining-tokens"] == str(tokens)
    chat(client, question)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client, question)
    assert int(caught.value.response.headers["retry-after-ms"]) > 59_000
    assert double.stats()["questions"] == {question: 2}


def test_stats_concurrency_and_reset(client, double):
    double.configure(latency=0.3)
    workers = [threading.Thread(target=chat, args=(client, f"c{i}")) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats = double.stats()
    assert stats["requests"] == {"chat": 6}
    assert stats["max_in_flight"] >= 3
    assert stats["cpu_s"] > 0
    conversation = client.conversations.create()
    double.reset()
    stats = double.stats()
    assert (stats["requests"], stats["questions"], stats["max_in_flight"]) == ({}, {}, 0)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="m", input="q", conversation=conversation.id)


def test_cli_flags_and_port_file(tmp_path):
    with start_double(latency=0.05, rpm=100, seed=3) as other:
        config = other.stats()["config"]
        assert (config["latency"], config["rpm"], config["seed"]) == (0.05, 100, 3)
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.double", "--port", "0", "--port-file", str(port_file)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line == f"READY http://127.0.0.1:{port_file.read_text().strip()}/v1\n"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        process.stdout.close()
