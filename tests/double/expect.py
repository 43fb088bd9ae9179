"""What the double answers, as pure functions shared by the server and the tests.

The server builds every answer and usage figure with these functions, so a test can
compute the exact expected cell for any question without talking to the server.
"""

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
    """The answer of an assistants run that completed after ``submit_tool_outputs``."""
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
