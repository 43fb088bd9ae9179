"""The one settings object: built once from flags, the environment and a `.env` file.

Order of precedence: command-line flag, then environment variable, then `.env` in the current
directory (python-dotenv never overrides variables already set), then the default below.
Nothing else in askbatch reads the environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from worker.errors import ConfigError
from worker.limits.rate.budget import parse_limits
from worker.pricing import parse_usd
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


def mask_url(url: str) -> str:
    """A URL with any password replaced by ***, for printing broker URLs."""
    url = re.sub(r"([?&]password=)[^&#]*", r"\1***", url)
    # Greedy up to the last "@" before the path: a password may hold an unescaped "@".
    return re.sub(r"(//[^/@:]*:)[^/]*@", r"\1***@", url)


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, "askbatch")


# Where each setting is read from; the README's configuration table lists the same.
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
    "ui_token": "ASKBATCH_UI_TOKEN",
    "ui_max_upload_mb": "ASKBATCH_UI_MAX_UPLOAD_MB",
}
DEFAULT_MODEL = "gpt-5-mini"  # when neither a flag, the environment nor the profile names one


@dataclass(frozen=True)
class Settings:
    provider: str = registry.DEFAULT
    model: str = ""
    instructions: str = ""
    base_url: str = ""
    api_key: Secret = field(default=Secret(""), repr=False)
    assistant_id: str = ""
    broker_url: str = ""
    # Ceilings of rows in flight: the job's share follows its rate limit (limits/rate/flight).
    concurrency: int = 256
    worker_concurrency: int = 64
    timeout_s: float = 600.0
    request_timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_cap_s: float = 30.0
    # Redelivery after a worker dies comes this long after the task was handed out (worker/app).
    visibility_timeout_s: int = 120
    idle_warning_s: float = 20.0
    # A distributed job's rows in the broker ahead of the answered ones (jobs/feed.py): each
    # task is about 1.3 kB in Redis, so a million-row job is not queued all at once.
    queue_ahead: int = 10_000
    state_dir: str = field(default_factory=_default_state_dir)
    assistant_profile: str = ""
    continue_on_error: bool = False
    max_tool_rounds: int = 8
    # --provider local: the model to serve ("" = the bundled Qwen2.5-Coder-1.5B; "smollm2";
    # or a GGUF path) and its server.
    local_model: str = ""
    local_port: int = 0  # 0: any free port on 127.0.0.1
    local_ctx: int = 4096
    local_threads: int = 0  # 0: the cores other work leaves free
    local_parallel: int = 0  # requests answered at once; 0: two per core, at most 8
    local_max_tokens: int = 1024  # small models can ramble until the context is full
    local_start_timeout_s: float = 300.0
    # Cost: a price file (worker.pricing), a spending cap in USD ("" = none), and the answer
    # length the estimate and the cap's holds assume: "N" or "LOW-HIGH" tokens.
    prices: str = ""
    max_cost: str = ""
    answer_tokens: str = "200-2000"
    # The job's rate budget (worker.limits.rate), shared by every worker: requests and tokens per
    # minute, "600" or per model "600,gpt-4o=100"; "" = no limit of our own.
    rpm: str = ""
    tpm: str = ""
    # Who the rows are asked for (a user or team id), sent hashed as `safety_identifier`.
    safety_id: str = field(default="", repr=False)
    # The synchronous service tier sent with every run ("" = none sent), and the Batch API
    # route: lines per uploaded file and seconds between looks at the batches out.
    service_tier: str = ""
    batch: bool = False
    batch_max_lines: int = BATCH_MAX_LINES
    batch_poll_s: float = 30.0
    # `askbatch serve`: the token every request must carry (required off loopback), and the
    # largest upload (worksheet or profile) it takes, in MB.
    ui_token: Secret = field(default=Secret(""), repr=False)
    ui_max_upload_mb: float = 50.0

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
        if self.ui_max_upload_mb <= 0:
            raise ConfigError("ASKBATCH_UI_MAX_UPLOAD_MB must be positive")
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
