"""In-memory state of the double: options, stats, stored objects, and id generation."""

import asyncio
import itertools
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

# A per-process prefix keeps ids unique across double processes; the counter keeps
# them cheap to make.
_PROCESS_TAG = os.urandom(4).hex()
_counter = itertools.count(1)


def new_id(prefix: str, sep: str = "_") -> str:
    return f"{prefix}{sep}{_PROCESS_TAG}{next(_counter):016x}"


def now_s() -> int:
    return int(time.time())


@dataclass(slots=True)
class Config:
    """Global options (CLI flags and ``POST /_double/config``); 0 disables a limit."""

    latency: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    seed: int = 0
    rpm: int = 0
    tpm: int = 0
    rate_period: float = 60.0  # seconds over which rpm/tpm are enforced, pro rata (ratelimit)
    quota: int = 0  # answering requests let through before 429 insufficient_quota (accounts)
    # The Batch API's pace and limits (batches); defaults keep tests fast.
    batch_validating_s: float = 0.2  # seconds a batch spends validating
    batch_lines_per_s: float = 2000.0  # lines answered per second in_progress (0: at once)
    batch_finalizing_s: float = 0.2  # seconds finalizing, before completed
    batch_cancelling_s: float = 0.2  # seconds cancelling, before cancelled
    batch_max_lines: int = 50_000  # lines per input file
    batch_max_bytes: int = 200_000_000  # bytes per input file
    batch_enqueued_tokens: int = 0  # input tokens of live batches, per organisation
    batch_expire_next: int = 0  # the next N batches expire after answering half their lines
    batch_creations_per_hour: int = 0  # batches created per rolling hour before 429
    batch_window_s: float = 86400.0  # a batch's expires_at, after its created_at
    # The next N batches never end: in_progress answering nothing, and a cancel leaves them
    # cancelling (what OGX does with a batch a server restart interrupted).
    batch_stall_next: int = 0
    # 1: batches as OGX 1.5.0 runs them, within the published API (see batchrun).
    batch_ogx: int = 0

    def update(self, options: dict) -> None:
        for name, value in options.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown option {name!r}")
            kind = type(getattr(self, name))
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"option {name!r} must be a number")
            setattr(self, name, kind(value))

    def as_dict(self) -> dict:
        return asdict(self)


FUNCTION_CALL = "function_call"
FUNCTION_CALL_OUTPUT = "function_call_output"


class Item(NamedTuple):
    """One entry of a context: a message, a function call or a tool output.

    ``role`` is the message role, or FUNCTION_CALL / FUNCTION_CALL_OUTPUT; ``text`` is
    the message text, the call's arguments or the output (what the prompt counts).
    """

    role: str
    text: str
    call_id: str = ""
    name: str = ""


@dataclass(slots=True)
class Stats:
    requests: Counter = field(default_factory=Counter)
    questions: Counter = field(default_factory=Counter)
    status_400: int = 0
    status_429: int = 0
    status_500: int = 0
    resets: int = 0
    # Per surface ("responses", "chat", "assistants"): rounds answered with function
    # calls, and requests (or submits) that delivered tool outputs.
    tool_rounds: Counter = field(default_factory=Counter)
    tool_outputs: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    errors: Counter = field(default_factory=Counter)  # every error answered, by HTTP status
    quota_used: int = 0
    # The Batch API: batches by status reached ("created" counts every one), lines by
    # outcome (answered, failed, expired, cancelled), files by purpose; the custom_ids
    # answered (200), and how many lines were answered for a custom_id answered before.
    batches: Counter = field(default_factory=Counter)
    batch_lines: Counter = field(default_factory=Counter)
    files: Counter = field(default_factory=Counter)
    batch_answered: set = field(default_factory=set)
    batch_repeats: int = 0

    def as_dict(self) -> dict:
        return {
            "requests": dict(self.requests),
            "questions": dict(self.questions),
            "status_400": self.status_400,
            "status_429": self.status_429,
            "status_500": self.status_500,
            "resets": self.resets,
            "tool_rounds": dict(self.tool_rounds),
            "tool_outputs": dict(self.tool_outputs),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "errors": {str(status): n for status, n in self.errors.items()},
            "quota_used": self.quota_used,
            "batches": dict(self.batches),
            "batch_lines": dict(self.batch_lines),
            "files": dict(self.files),
            "batch_repeats": self.batch_repeats,
            "cpu_s": time.process_time(),
        }


@dataclass(slots=True)
class Conversation:
    id: str
    created_at: int
    metadata: dict
    items: list[Item]  # in order

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class Thread:
    id: str
    created_at: int
    metadata: dict
    messages: list[dict] = field(default_factory=list)  # Message objects, oldest first
    active_run: "Run | None" = None

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "object": "thread",
            "created_at": self.created_at,
            "metadata": self.metadata,
            "tool_resources": {},
        }


@dataclass(slots=True, eq=False)
class Run:
    """A run: its public object plus what the double needs to finish it."""

    obj: dict
    thread: Thread
    question: str
    turn: int
    prompt_messages: list[str]
    outcome: str  # completed, failed, incomplete, expired, cancelled, requires_action, never
    delay_s: float  # latency + [[sleep]]: time from (re)start to the outcome
    deadline: float  # monotonic time at which the run reaches its outcome
    tool_outputs: list[str] | None = None
    message: dict | None = None  # the assistant message, once written
    schema: dict | None = None  # JSON schema of a structured answer
    # Function tools: the marked calls to make each round, what ends the run after the
    # tool rounds, the calls awaiting outputs, earlier rounds' calls and outputs (they
    # join the prompt), and the usage billed by the call rounds so far.
    planned: list[tuple[str, str]] = field(default_factory=list)
    call_again: bool = False
    final_outcome: str = "completed"
    calls: list[Item] = field(default_factory=list)
    rounds: list[Item] = field(default_factory=list)
    spent: tuple[int, int] = (0, 0)
    # Set whenever the run reaches a terminal state or is cancelled, for streams.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> str:
        return self.obj["status"]


def text_message(
    thread_id: str,
    role: str,
    text: str,
    *,
    run_id: str | None = None,
    assistant_id: str | None = None,
    status: str = "completed",
    metadata: dict | None = None,
) -> dict:
    created = now_s()
    return {
        "id": new_id("msg"),
        "object": "thread.message",
        "created_at": created,
        "thread_id": thread_id,
        "role": role,
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
        "assistant_id": assistant_id,
        "run_id": run_id,
        "attachments": [],
        "metadata": metadata or {},
        "status": status,
        "completed_at": created if status == "completed" else None,
        "incomplete_at": created if status == "incomplete" else None,
        "incomplete_details": {"reason": "max_tokens"} if status == "incomplete" else None,
    }


def message_text(message: dict) -> str:
    return "".join(part["text"]["value"] for part in message["content"] if part["type"] == "text")


class Store:
    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.assistants: dict[str, dict] = {}
        self.threads: dict[str, Thread] = {}
        self.runs: dict[str, Run] = {}
        self.files: dict = {}  # the Files API's (files.StoredFile), bytes on disk
        self.batches: dict = {}  # the Batch API's (batches.BatchJob), oldest first

    def clear(self) -> None:
        for held in (*self.files.values(), *self.batches.values()):
            held.discard()  # their bytes on disk
        self.files.clear()
        self.batches.clear()
        self.conversations.clear()
        self.assistants.clear()
        self.threads.clear()
        self.runs.clear()
