"""Request bodies as context items: Responses input and chat messages become the messages,
function calls and tool outputs the double's answers are computed from."""

from .core import content_text, dialogue
from .state import FUNCTION_CALL, FUNCTION_CALL_OUTPUT, Item


def input_items(value: object) -> list[Item]:
    """Responses/Conversations input: a string, or a list of message, function_call and
    function_call_output items (other item types are ignored)."""
    if isinstance(value, str):
        return [Item("user", value)]
    items = []
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            items.append(Item(item.get("role", "user"), content_text(item.get("content"))))
        elif kind == FUNCTION_CALL:
            items.append(call_item(item, item.get("call_id")))
        elif kind == FUNCTION_CALL_OUTPUT:
            output = item.get("output")
            text = output if isinstance(output, str) else content_text(output)
            items.append(Item(FUNCTION_CALL_OUTPUT, text, str(item.get("call_id"))))
    return items


def call_item(call: dict, call_id: object) -> Item:
    """A function call (its ``arguments`` and ``name``) as an item."""
    return Item(FUNCTION_CALL, str(call.get("arguments", "")), str(call_id), str(call.get("name")))


def response_dialogue(body: dict) -> tuple[str, int, list[str]]:
    """(question, turn, prompt) of a Responses body without a stored conversation."""
    return dialogue(body.get("instructions"), input_items(body.get("input")))


def chat_dialogue(body: dict) -> tuple[str, int, list[str]]:
    messages = body.get("messages")
    return dialogue(None, chat_items(messages if isinstance(messages, list) else []))


def chat_items(messages: list) -> list[Item]:
    """A chat history as items: an assistant message's ``tool_calls`` become function
    calls (its content joins only when non-empty), ``tool`` messages tool outputs."""
    items = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        text = content_text(message.get("content"))
        if role == "tool":
            items.append(Item(FUNCTION_CALL_OUTPUT, text, str(message.get("tool_call_id"))))
        elif role == "assistant" and message.get("tool_calls"):
            if text:
                items.append(Item("assistant", text))
            for call in message["tool_calls"]:
                function = (call.get("function") if isinstance(call, dict) else None) or {}
                items.append(call_item(function, call.get("id")))
        else:
            items.append(Item(role, text))
    return items
