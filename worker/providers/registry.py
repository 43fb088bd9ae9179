"""Every provider askbatch answers on, and what each one can do: the one place that knows a
provider by its name. Adding a provider is one module beside this one and one entry below.

Everything else asks these entries (`get(name).batch_endpoint`, `.local_server`, …) instead of
comparing names, and `scripts/check-tree` fails on a provider's name compared outside
worker/providers/. This module imports nothing of askbatch's and no SDK: worker/settings.py
reads it, and a provider's own module (with the `openai` SDK behind it) is imported only when
a job asks for it (`make`, `batch_lines`, `set_up`). docs/providers.md says how to add one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# How a thread (the rows sharing a `thread` value) is kept between its turns.
CONVERSATION = "server conversation"  # the server keeps it: one conversation per thread
SERVER_THREAD = "server thread"  # the server keeps it: a thread object runs are made in
HISTORY = "history kept by askbatch"  # the server keeps nothing: each turn sends the earlier ones

# The API's `service_tier` values askbatch sends ("" sends none: the project's default).
SERVICE_TIERS = ("auto", "default", "flex", "priority")


@dataclass(frozen=True)
class ProviderInfo:
    """One provider: its name (`--provider`), where its code is, and what it can do."""

    name: str
    summary: str  # one line, for people (docs/providers.md)
    provider: str  # "module:Class" of the Provider (worker/providers/base.py) rows are asked with
    thread: str  # CONVERSATION, SERVER_THREAD or HISTORY
    # The Batch API endpoint its lines are posted to ("" = no --batch), and "module:object" of
    # what builds those lines and reads their answers (base.BatchLines).
    batch_endpoint: str = ""
    batch_lines: str = ""
    service_tiers: tuple[str, ...] = ()  # the --service-tier values it takes
    check: bool = True  # a profile's [check] can ask again after each answer
    # askbatch starts a server of its own for it (worker/local): no API key is needed, its
    # answers are free, and a resumed embedded job has no server to go back to.
    local_server: bool = False
    on_page: bool = True  # `askbatch serve` offers it (a local server is for the command line)
    # prompt_cache_key, safety_identifier and the service tier go with each request (a server
    # of askbatch's own has no use for them).
    request_keys: bool = True
    # "module:function" run once when a job is created, before any row: (client, spec) → spec.
    setup: str = ""
    # What to tell a user whose OpenAI API answers 404 for it: OpenAI has shut it down.
    retired_at_openai: str = ""

    def make(self, client: Any, spec: Any) -> Any:
        """The job's Provider, on this SDK client (its module is imported now)."""
        return _load(self.provider)(client, spec)

    def lines(self) -> Any:
        """What the Batch route builds this provider's lines and reads their answers with."""
        if not self.batch_lines:
            raise LookupError(f"provider {self.name} has no Batch API endpoint")
        return _load(self.batch_lines)

    def set_up(self, client: Any, spec: Any) -> Any:
        """The job's spec after the provider's once-per-job setup (the same spec if none)."""
        return _load(self.setup)(client, spec) if self.setup else spec


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


_ENTRIES = (
    ProviderInfo(
        name="responses",
        summary="OpenAI's Responses API: a thread is a conversation, a run is a response",
        provider="worker.providers.responses:ResponsesProvider",
        thread=CONVERSATION,
        batch_endpoint="/v1/responses",
        batch_lines="worker.providers.responses:LINES",
        service_tiers=SERVICE_TIERS,
    ),
    ProviderInfo(
        name="chat",
        summary="Chat Completions, on OpenAI or any compatible server (Ollama, vLLM, LiteLLM…)",
        provider="worker.providers.chat:ChatProvider",
        thread=HISTORY,
        batch_endpoint="/v1/chat/completions",
        batch_lines="worker.providers.chat:LINES",
        service_tiers=SERVICE_TIERS,
    ),
    ProviderInfo(
        name="assistants",
        summary="the legacy Assistants API: one assistant per job, a thread per thread of rows",
        provider="worker.providers.assistants:AssistantsProvider",
        thread=SERVER_THREAD,
        # The check asks again after each answer; this surface keeps one assistant per job.
        check=False,
        setup="worker.providers.assistants:set_up_job",
        retired_at_openai=(
            "the Assistants API was shut down at OpenAI on 2026-08-26; use --provider responses "
            "instead (a thread is a conversation there, a run is a response). Servers that still "
            "speak the Assistants API keep working with --provider assistants and --base-url."
        ),
    ),
    ProviderInfo(
        name="local",
        summary="a llama.cpp server askbatch starts on this machine, asked by Chat Completions",
        # A local model server is one more OpenAI-compatible base URL (worker/local runs it).
        provider="worker.providers.chat:ChatProvider",
        thread=HISTORY,
        local_server=True,
        on_page=False,
        request_keys=False,
    ),
)
PROVIDERS: dict[str, ProviderInfo] = {entry.name: entry for entry in _ENTRIES}
DEFAULT = _ENTRIES[0].name  # what a job is asked on when nothing names a provider


def get(name: str) -> ProviderInfo:
    """The provider of this name; KeyError for one askbatch does not have (settings check)."""
    return PROVIDERS[name]


def find(name: str) -> ProviderInfo | None:
    """The provider of this name, or None (a price look-up may have no provider)."""
    return PROVIDERS.get(name)


def names(where: Callable[[ProviderInfo], object] = lambda p: True) -> tuple[str, ...]:
    """The names of the providers for which `where` holds, in the order of `PROVIDERS`."""
    return tuple(name for name, entry in PROVIDERS.items() if where(entry))
