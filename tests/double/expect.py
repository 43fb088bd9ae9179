"""What the double answers, as pure functions shared by the server and the tests.

The server builds every answer and usage figure with these functions, so a test can
compute the exact expected cell for any question without talking to the server.

Function tools: when a request offers function tools and the latest user question holds
``[[call:NAME]]`` or ``[[call:NAME:JSON-ARGS]]`` markers (see ``marked_calls``), the model
calls every marked, offered tool in one round; once the outputs are sent back it answers
``final_answer(question, turn, outputs=...)``. ``[[callagain]]`` makes it call the same
tools again after every round instead. Structured answers: when a JSON-schema format is
asked, the answer text is ``final_answer(question, turn, schema=...)``.
"""

import json
import re
from fnmatch import fnmatchcase

ANSWER_PREFIX = "answer: "


def count_tokens(text: str) -> int:
    """Whitespace-separated words, at least 1: a stand-in for a tokenizer."""
    return max(1, len(text.split()))


def answer_for(question: str, turn: int) -> str:
    """The full answer to ``question`` (markers kept), where ``turn`` is the 1-based
    number of user messages in the thread/conversation/history including this one."""
    return f"[turn {turn}] {ANSWER_PREFIX}{question}"


def partial_answer(answer: str) -> str:
    """The text returned for an ``[[incomplete]]`` answer: its first half."""
    return answer[: len(answer) // 2]


def tool_answer(answer: str, outputs: list[str]) -> str:
    """The answer after a round of tool outputs (any surface, and after an assistants
    ``[[requires_action]]``): ``outputs`` are the output strings in call order."""
    return f"{answer} [tools: {','.join(outputs)}]"


def usage_for(messages: list[str], answer: str, reasoning_tokens: int = 0) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) for an answer.

    ``messages`` are, in order: the instructions (only when non-empty instructions were
    sent), every earlier user message and assistant answer of the thread, conversation
    or chat history, then the new question. Reasoning tokens (``[[reasoning:N]]``) are
    part of the completion tokens.
    """
    prompt = sum(count_tokens(m) + 3 for m in messages)
    return prompt, count_tokens(answer) + reasoning_tokens


def tool_round_usage(
    messages: list[str], arguments: list[str], reasoning_tokens: int = 0
) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of a request answered with function calls.

    Every round is a billed request. Its prompt is counted like ``usage_for``'s over the
    context sent; the completion is ``count_tokens(arguments)`` summed over the calls made
    (plus ``[[reasoning:N]]``, which applies to every request of the question on the
    Responses and Chat surfaces). In a context, each earlier function call counts as one
    message whose text is its arguments and each tool output as one message whose text is
    the output: so the request that sends round 1's outputs has the prompt
    ``messages + arguments_1 + outputs_1`` and, when answered, the usage
    ``usage_for(messages + arguments_1 + outputs_1, answer)``. An assistants run reports
    the sum of its rounds: ``tool_round_usage`` per call round plus the final ``usage_for``.
    """
    prompt = sum(count_tokens(m) + 3 for m in messages)
    return prompt, sum(count_tokens(a) for a in arguments) + reasoning_tokens


# Up to the first "]]": JSON arguments may hold a single "]" but never "]]".
_CALL_MARKER = re.compile(r"\[\[call:([\w.-]+)(?::(.*?))?\]\]", re.DOTALL)


def marked_calls(question: str) -> list[tuple[str, str]]:
    """(name, arguments) of each ``[[call:NAME]]``/``[[call:NAME:JSON-ARGS]]`` marker, in
    order. The arguments are the JSON-ARGS text as written (stripped, not re-encoded, so a
    malformed literal reaches the client as is), ``"{}"`` when absent."""
    return [(name, (args or "").strip() or "{}") for name, args in _CALL_MARKER.findall(question)]


BAD_JSON = "not json {"


def _schema_type(spec: dict) -> object:
    kind = spec.get("type")
    if isinstance(kind, list):  # e.g. ["string", "null"]: the first non-null type
        kind = next((k for k in kind if k != "null"), None)
    return kind


_BY_TYPE = {"boolean": True, "array": [], "object": {}}


def structured_answer(schema: dict, question: str, turn: int) -> dict:
    """The object answered for a JSON-schema format: for each of ``schema["properties"]``
    in order, ``enum`` -> its first value; string -> ``"NAME: " + answer_for(question,
    turn)``; integer -> turn; number -> turn + 0.5; boolean -> True (False when the question
    holds ``[[false]]``: a judge's verdict scripted through the answer it reads); array ->
    []; object -> {}; anything else (or no type) -> None."""
    answer = answer_for(question, turn)
    obj: dict = {}
    for name, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        kind = _schema_type(spec)
        if spec.get("enum"):
            obj[name] = spec["enum"][0]
        elif kind == "string":
            obj[name] = f"{name}: {answer}"
        elif kind == "integer":
            obj[name] = turn
        elif kind == "number":
            obj[name] = turn + 0.5
        elif kind == "boolean":
            obj[name] = "[[false]]" not in question
        else:
            obj[name] = _BY_TYPE.get(kind)  # type: ignore[arg-type]
    return obj


def wrong_schema_answer(schema: dict) -> dict:
    """The ``[[wrongschema]]`` object: every required string property set to 0, nothing
    else (valid JSON that fails validation when the schema requires a string)."""
    properties = schema.get("properties") or {}
    return {
        name: 0
        for name in schema.get("required") or []
        if _schema_type(properties.get(name) or {}) == "string"
    }


def final_answer(
    question: str, turn: int, *, schema: dict | None = None, outputs: list[str] | None = None
) -> str:
    """The full text of a message answer (before any ``[[incomplete]]`` cut).

    With a schema (a JSON-schema format was asked): ``BAD_JSON`` for ``[[badjson]]``, the
    JSON of ``wrong_schema_answer`` for ``[[wrongschema]]``, else the JSON of
    ``structured_answer`` (``json.dumps(obj, ensure_ascii=False)``; tool outputs are then
    not appended). Without one: ``answer_for``, or ``tool_answer`` after tool outputs.
    """
    if schema is not None:
        if "[[badjson]]" in question:
            return BAD_JSON
        if "[[wrongschema]]" in question:
            obj = wrong_schema_answer(schema)
        else:
            obj = structured_answer(schema, question, turn)
        return json.dumps(obj, ensure_ascii=False)
    answer = answer_for(question, turn)
    return answer if outputs is None else tool_answer(answer, outputs)


# Service tiers: the values the API takes, and the models the double offers flex for (the API
# offers it on some models only).
SERVICE_TIERS = ("auto", "default", "flex", "priority", "scale")
FLEX_MODELS = ("gpt-5*", "o3*", "o4-mini*")


def tier_used(requested: str | None, model: str) -> str | None:
    """The ``service_tier`` an answer reports: "default" when none, ``auto`` or ``default``
    was asked, else the tier asked for; None when flex is asked of a model that does not
    offer it (the double answers 400 ``param: service_tier``). ``[[flexbusy:N]]`` makes the
    first N flex requests of a question a 429 resource-unavailable."""
    if requested in (None, "auto", "default"):
        return "default"
    if requested == "flex" and not any(fnmatchcase(model or "", p) for p in FLEX_MODELS):
        return None
    return requested
