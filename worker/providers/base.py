"""The one interface every provider fills: open a thread, then ask turns in it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.models import JobSpec, Row, Usage
from worker.profile import Profile
from worker.retry import Retrier
from worker.tools import ToolBox, ToolLog


@dataclass(slots=True)
class Thread:
    """A conversation. `id` is the provider's id (or askbatch's own, for chat).

    `history` is only used by providers whose server keeps no state (chat).
    """

    id: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Turn:
    """The outcome of one run: a final status word and what came with it."""

    status: str
    answer: str = ""
    error: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    run_id: str = ""
    service_tier: str = ""  # the tier the server says it answered at; "" when it said none


class Provider(Protocol):
    """A way of running a thread. One instance serves a whole job inside one process."""

    def open_thread(self, retrier: Retrier) -> Thread: ...

    def ask(self, thread: Thread, row: Row, retrier: Retrier, tools: ToolLog) -> Turn: ...


class BatchLines(Protocol):
    """What the Batch route (worker/batch) asks of a provider with a Batch endpoint: the body
    of a row's line, and how the answer that comes back is read. A line carries the thread's
    earlier turns itself: a batch has no server-side thread to point to."""

    def static_params(self, job: JobContext) -> dict[str, Any]:
        """What every line of the job sends alike (the profile's sampling, tools, schema)."""
        ...

    def body(
        self,
        job: JobContext,
        static: dict[str, Any],
        row: Row,
        history: list[dict[str, Any]],
        items: Sequence[dict[str, Any]],
    ) -> dict[str, Any]:
        """The row's request body: `history` the thread's earlier turns as user/assistant
        messages, `items` this turn's tool calls and their outputs so far."""
        ...

    def unreadable(self, body: Mapping[str, Any]) -> str:
        """Why a line's answer body is not one this surface writes ("" when it is): such a
        line fails its row, never the job."""
        ...

    def turn(self, body: Mapping[str, Any], asked: str) -> Turn:
        """An answer as a turn; `asked` is the model asked for (some servers name none)."""
        ...

    def tool_calls(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The tool calls an answer asks for ([] for a final answer)."""
        ...

    def tool_round(
        self, job: JobContext, body: Mapping[str, Any], calls: list[dict[str, Any]], log: ToolLog
    ) -> list[dict[str, Any]]:
        """Run the calls; the items the row's next line adds: the calls as the model made
        them, then their outputs."""
        ...


class JobContext:
    """What every provider derives from the job: its profile and its imported tools."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.profile = Profile.from_json(spec.profile)
        self.toolbox = ToolBox(self.profile.tools)
        self._per_model: dict[str, dict[str, Any]] = {}

    def model(self, row: Row) -> str:
        return row.model or self.spec.model

    def per_request(self, model: str) -> dict[str, Any]:
        """What responses and chat send besides the row: one prompt cache key per job and
        model, so that rows sharing the instructions reach the same cache, the hashed
        safety identifier when the user set one, and the job's service tier."""
        params = self._per_model.get(model)
        if params is None:
            digest = hashlib.sha256(f"{self.spec.job_id}\0{model}".encode()).hexdigest()
            params = {"prompt_cache_key": f"askbatch-{digest[:32]}"}
            if self.spec.safety_identifier:
                params["safety_identifier"] = self.spec.safety_identifier
            if self.spec.service_tier:
                params["service_tier"] = self.spec.service_tier
            self._per_model[model] = params
        return params

    def instructions(self, row: Row) -> str:
        return row.instructions or self.spec.instructions

    def sampling(self) -> dict[str, Any]:
        """temperature / top_p from the profile, only when set (servers differ in defaults)."""
        p = self.profile
        return {
            k: v for k, v in (("temperature", p.temperature), ("top_p", p.top_p)) if v is not None
        }


def read_json(create: Callable[..., Any], **params: Any) -> dict[str, Any]:
    """Call a `with_raw_response` SDK method and read its body as plain JSON.

    The responses and chat providers read answers this way rather than as the SDK's typed
    models: building those cost about 1 ms of CPU per question, a fifth of the client's work,
    in the benchmark's CPU-bound case (bench/, `cpu` group). HTTP errors still raise the SDK's
    exceptions, so retries and error messages are unchanged.
    """
    return create(**params).http_response.json()


def too_many_rounds(rounds: int) -> str:
    return f"the model still asked for tools after {rounds} rounds; stopped (max_tool_rounds)"


def tier_of(body: Mapping[str, Any]) -> str:
    """The `service_tier` a response or chat completion says it was answered at, or ""."""
    tier = body.get("service_tier")
    return tier if isinstance(tier, str) else ""
