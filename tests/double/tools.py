"""Function tools and JSON-schema formats, shared by the three API surfaces.

A request either gets a round of function calls (the question marks tools the request
offers) or a message answer; ``plan`` decides which from the context sent.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from . import expect
from .core import ApiError
from .faults import Markers
from .state import FUNCTION_CALL, FUNCTION_CALL_OUTPUT, Item, new_id


def function_names(tools: object) -> frozenset[str]:
    """Names of the function tools offered, in either shape: Responses'
    ``{"type": "function", "name": ...}`` or Chat/Assistants'
    ``{"type": "function", "function": {"name": ...}}``."""
    names = set()
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else tool.get("name")
            if isinstance(name, str):
                names.add(name)
    return frozenset(names)


def planned_calls(question: str, names: frozenset[str]) -> list[tuple[str, str]]:
    """The marked calls whose tool is offered; markers naming other tools are ignored."""
    return [(name, args) for name, args in expect.marked_calls(question) if name in names]


def new_calls(planned: list[tuple[str, str]]) -> list[Item]:
    return [Item(FUNCTION_CALL, args, new_id("call"), name) for name, args in planned]


def _schema(spec: object) -> dict | None:
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {}


def responses_schema(text: object) -> dict | None:
    """The schema of ``text.format`` when it is ``json_schema``, else None."""
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return _schema(fmt)
    return None


def chat_schema(response_format: object) -> dict | None:
    """The schema of a Chat/Assistants ``response_format`` of type ``json_schema``."""
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return _schema(response_format.get("json_schema"))
    return None


def check_outputs(items: Sequence[Item], param: str) -> None:
    """400 unless every tool output answers an earlier call and every call has an output,
    as OpenAI insists (a conversation left with unanswered calls takes no new message)."""
    calls: set[str] = set()
    answered: set[str] = set()
    for item in items:
        if item.role == FUNCTION_CALL:
            calls.add(item.call_id)
        elif item.role == FUNCTION_CALL_OUTPUT:
            if item.call_id not in calls:
                raise ApiError(
                    400,
                    f"No tool call found for tool output with call_id '{item.call_id}'.",
                    param=param,
                )
            answered.add(item.call_id)
    for item in items:
        if item.role == FUNCTION_CALL and item.call_id not in answered:
            raise ApiError(
                400, f"No tool output found for function call '{item.call_id}'.", param=param
            )


@dataclass(frozen=True, slots=True)
class Plan:
    """What a request gets: ``calls`` to make, or a message answer that follows the tool
    ``outputs`` (None when no outputs were sent). ``continuing`` is set when the request
    delivers tool outputs."""

    calls: list[Item]
    outputs: list[str] | None
    continuing: bool


def plan(question: str, markers: Markers, tools: object, items: Sequence[Item]) -> Plan:
    """Decide a Responses/Chat request from its whole context (history + input)."""
    continuing = bool(items) and items[-1].role == FUNCTION_CALL_OUTPUT
    planned = planned_calls(question, function_names(tools))
    if planned and (markers.call_again or not continuing):
        return Plan(new_calls(planned), None, continuing)
    return Plan([], round_outputs(items) if continuing else None, continuing)


def round_outputs(items: Sequence[Item]) -> list[str]:
    """Outputs of the calls made since the last user message, in call order."""
    start = max((i for i, item in enumerate(items) if item.role == "user"), default=-1) + 1
    tail = items[start:]
    by_id = {item.call_id: item.text for item in tail if item.role == FUNCTION_CALL_OUTPUT}
    return [by_id[item.call_id] for item in tail if item.role == FUNCTION_CALL]
