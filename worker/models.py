"""Typed payloads that cross the queue: a row to ask, the result recorded for it, a job's stop.

Everything here turns into plain JSON (`to_json`) and back (`from_json`): Celery is configured
for JSON only, and results are stored as JSON in Redis or SQLite.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

# Final statuses a row can end with. The run statuses are the provider's own words
# (the user's run-status table); `skipped` means askbatch chose not to send the row.
COMPLETED = "completed"
FAILED = "failed"
INCOMPLETE = "incomplete"
EXPIRED = "expired"
CANCELLED = "cancelled"
SKIPPED = "skipped"
FINAL_STATUSES = (COMPLETED, FAILED, INCOMPLETE, EXPIRED, CANCELLED, SKIPPED)

# The columns askbatch appends to the input columns, in this order.
RESULT_COLUMNS = (
    "status",
    "answer",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "model",
    "thread_id",
    "run_id",
    "latency_s",
    "attempts",
    "tool_calls",
    # Added after the others: users' scripts read columns by position too.
    "service_tier",
)
# Result.service_tier of rows answered through the Batch API (the API reports no tier there).
BATCH_TIER = "batch"


@dataclass(frozen=True, slots=True)
class Row:
    """One question to ask. `index` is the 0-based position in the input file."""

    index: int
    id: str
    question: str
    thread: str = ""
    model: str = ""
    instructions: str = ""

    def to_json(self) -> dict[str, Any]:
        # Field by field: asdict's deep copy cost a 100,000-row batch job seconds.
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(slots=True)
class Usage:
    """Token counts of one run. Cached and reasoning tokens are parts of prompt/completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # False when the server sent no usage at all: the cells are then empty, not a made-up 0.
    reported: bool = True

    def add(self, other: Usage) -> None:
        self.reported = self.reported and other.reported
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens


@dataclass(slots=True)
class Result:
    """What askbatch records for a row: the answer, the run's status and its usage."""

    index: int
    status: str
    answer: str = ""
    error: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    thread_id: str = ""
    run_id: str = ""
    latency_s: float = 0.0
    attempts: int = 0
    tool_calls: str = ""  # "evaluate x2, lookup x1"
    # The tier the API says answered the row ("default", "flex", "priority"; BATCH_TIER for
    # the Batch API); "" when it reported none. The row is priced at it (worker.pricing).
    service_tier: str = ""
    # Exact USD (worker.pricing); None when the row was never sent or its model is unpriced.
    cost_usd: Decimal | None = None
    # Cells beyond RESULT_COLUMNS, by column name: the `answer.<field>` of structured answers.
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # Field by field rather than asdict's deep copy, which cost most of the CPU of reading
        # a 50,000-line batch output into the store.
        data = {name: getattr(self, name) for name in self.__slots__}
        data["usage"] = {name: getattr(self.usage, name) for name in Usage.__slots__}
        data["extra"] = dict(self.extra)
        data["cost_usd"] = None if self.cost_usd is None else str(self.cost_usd)
        return data

    def stored(self) -> str:
        """The compact JSON the stores keep: the fields as an array in STORED order, without
        their names and with the trailing ones at their defaults left out (a short answer's
        row in Redis or SQLite is a third of its named form). `from_stored` reads it back."""
        data = self.to_json()
        usage = data["usage"]
        data["usage"] = _trimmed([usage[k] for k in USAGE_STORED], _USAGE_DEFAULTS)
        return json.dumps(
            _trimmed([data[k] for k in STORED], _STORED_DEFAULTS, keep=1),
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_stored(cls, raw: str, index: int) -> Result:
        """The result of row `index` from its `stored()` form, or from the named form that
        askbatch stored before (a job begun by an earlier version, resumed by this one)."""
        data = json.loads(raw)
        if isinstance(data, dict):
            return cls.from_json(data)
        named = dict(zip(STORED, data, strict=False))
        named["usage"] = dict(zip(USAGE_STORED, named.get("usage") or [], strict=False))
        return cls.from_json({**named, "index": index})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        data = dict(data)
        data["usage"] = Usage(**data.get("usage") or {})
        if data.get("cost_usd") is not None:
            data["cost_usd"] = Decimal(data["cost_usd"])
        return cls(**data)

    def columns(self) -> dict[str, str]:
        """The result as output-CSV cells, keyed by RESULT_COLUMNS."""
        u = self.usage
        count = str if u.reported else (lambda _: "")
        return {
            "status": self.status,
            "answer": self.answer,
            "error": self.error,
            "prompt_tokens": count(u.prompt_tokens),
            "completion_tokens": count(u.completion_tokens),
            "total_tokens": count(u.total_tokens),
            "cached_tokens": count(u.cached_tokens),
            "reasoning_tokens": count(u.reasoning_tokens),
            "cost_usd": money(self.cost_usd),
            "model": self.model,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "latency_s": f"{self.latency_s:.3f}",
            "attempts": str(self.attempts),
            "tool_calls": self.tool_calls,
            "service_tier": self.service_tier,
        }


# A stored result's fields, in order (drop.lua reads the status, 1st, and usage, 4th, by
# position). Append new fields at the end, so that rows stored before still read back.
STORED = (
    "status", "answer", "error", "usage", "model", "thread_id", "run_id", "latency_s",
    "attempts", "tool_calls", "service_tier", "cost_usd", "extra",
)  # fmt: skip
USAGE_STORED = (
    "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
    "reported",
)  # fmt: skip
_blank = Result(index=0, status="").to_json()
_USAGE_DEFAULTS = [_blank["usage"][k] for k in USAGE_STORED]
_STORED_DEFAULTS = [[] if k == "usage" else _blank[k] for k in STORED]


def _trimmed(values: list[Any], defaults: list[Any], keep: int = 0) -> list[Any]:
    """`values` without the trailing ones equal to their defaults (the first `keep` stay)."""
    end = len(values)
    while end > keep and values[end - 1] == defaults[end - 1]:
        end -= 1
    return values[:end]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """How every row of a job is asked. Stored with the job; holds no secret.

    Workers read the API key from their own environment, never from here.
    """

    job_id: str
    provider: str
    model: str
    base_url: str = ""
    instructions: str = ""
    assistant_id: str = ""
    timeout_s: float = 600.0
    request_timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_cap_s: float = 30.0
    total: int = 0
    # The assistant profile used (worker.profile.Profile as JSON); recorded with the job.
    profile: dict[str, Any] = field(default_factory=dict)
    continue_on_error: bool = False
    max_tool_rounds: int = 8
    # Cost (worker.pricing, worker.limits.spending): the user's price table as canonical JSON, the
    # spending cap in USD ("" for none) and the answer length each row's hold assumes.
    prices: str = ""
    max_cost: str = ""
    answer_tokens: int = 0
    # The rate budget (worker.limits.rate): requests and tokens per minute, "600,gpt-4o=100".
    rpm: str = ""
    tpm: str = ""
    # sha256 of ASKBATCH_SAFETY_ID, sent as `safety_identifier`; never the raw value.
    safety_identifier: str = ""
    # The service tier every synchronous run asks for ("" = none sent), or the Batch API
    # route (worker.batch) with its lines per file and seconds between polls.
    service_tier: str = ""
    batch: bool = False
    batch_max_lines: int = 50_000
    batch_poll_s: float = 30.0
    batch_margin_s: float = 3600.0  # past a batch's window, before it is given up
    # The answer key (jobs/grade.py): {"expected": column, "field": answer field, "judge":
    # model}; empty when the sheet has no key.
    grade: dict[str, str] = field(default_factory=dict)
    # The profile was uploaded to `askbatch serve`: each process that answers the job runs only
    # the tools its own ASKBATCH_UI_TOOLS allows (worker/runtime.py), whatever the profile names.
    profile_from_page: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class Stop(NamedTuple):
    """A job's stop (worker/store `stop`): no row starts after it, and the rows not started
    take `status` and `reason` as their result; a halt's (worker/fatal) leaves them pending."""

    status: str
    reason: str


def money(value: Decimal | None) -> str:
    """A cost as written: 9 decimals (exact to $0.001 per million tokens), "" when unknown."""
    if value is None:
        return ""
    return f"{value.quantize(Decimal('0.000000001'), rounding=ROUND_HALF_UP):f}"
