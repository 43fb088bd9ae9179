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

PROVIDERS = ("responses", "chat", "assistants")
OPENAI_URL = "https://api.openai.com/v1"


class Secret(str):
    """A string that never shows itself in repr() or logs (the API key)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


def mask_url(url: str) -> str:
    """A URL with any password replaced by ***, for printing broker URLs."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, "askbatch")


# (field, env var, type, default, help) — the README's settings table is this list.
SETTINGS_TABLE: list[tuple[str, str, type, Any, str]] = [
    ("provider", "ASKBATCH_PROVIDER", str, "responses", "responses | chat | assistants"),
    ("model", "ASKBATCH_MODEL", str, "gpt-5-mini", "model asked, unless a row's `model` says"),
    ("instructions", "ASKBATCH_INSTRUCTIONS", str, "", "system instructions for every run"),
    ("base_url", "OPENAI_BASE_URL", str, "", "API base URL; empty means OpenAI's"),
    ("api_key", "OPENAI_API_KEY", Secret, "", "API key (never printed or stored)"),
    ("assistant_id", "ASKBATCH_ASSISTANT_ID", str, "", "reuse this assistant (assistants)"),
    ("broker_url", "ASKBATCH_BROKER_URL", str, "", "redis:// or rediss:// URL; empty = embedded"),
    ("concurrency", "ASKBATCH_CONCURRENCY", int, 8, "runs in flight (embedded mode)"),
    ("worker_concurrency", "ASKBATCH_WORKER_CONCURRENCY", int, 64, "threads per worker"),
    ("timeout_s", "ASKBATCH_TIMEOUT", float, 600.0, "seconds a row may take, retries included"),
    ("request_timeout_s", "ASKBATCH_REQUEST_TIMEOUT", float, 120.0, "seconds per HTTP request"),
    ("max_attempts", "ASKBATCH_MAX_ATTEMPTS", int, 6, "tries per API call (429, 5xx, network)"),
    ("backoff_s", "ASKBATCH_BACKOFF", float, 0.5, "first retry delay; doubles, with jitter"),
    ("backoff_cap_s", "ASKBATCH_BACKOFF_CAP", float, 30.0, "longest retry delay"),
    ("visibility_timeout_s", "ASKBATCH_VISIBILITY_TIMEOUT", int, 900, "redelivery after a crash"),
    ("idle_warning_s", "ASKBATCH_IDLE_WARNING", float, 20.0, "warn if no worker starts by then"),
    ("state_dir", "ASKBATCH_STATE_DIR", str, _default_state_dir(), "embedded jobs' results"),
]


@dataclass(frozen=True)
class Settings:
    provider: str = "responses"
    model: str = "gpt-5-mini"
    instructions: str = ""
    base_url: str = ""
    api_key: Secret = field(default=Secret(""), repr=False)
    assistant_id: str = ""
    broker_url: str = ""
    concurrency: int = 8
    worker_concurrency: int = 64
    timeout_s: float = 600.0
    request_timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_cap_s: float = 30.0
    visibility_timeout_s: int = 900
    idle_warning_s: float = 20.0
    state_dir: str = field(default_factory=_default_state_dir)

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None, dotenv: bool = True) -> Settings:
        """Settings from flags (`overrides`, None values ignored), env and `.env`."""
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        values: dict[str, Any] = {}
        for name, env, kind, _default, _help in SETTINGS_TABLE:
            raw = os.environ.get(env)
            if raw is not None and raw.strip() != "":
                values[name] = _parse(kind, raw.strip() if kind is not Secret else raw, env)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(
                f"unknown provider {self.provider!r}; choose one of: {', '.join(PROVIDERS)} "
                "(--provider or ASKBATCH_PROVIDER)"
            )
        for name in ("concurrency", "worker_concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        if self.broker_url and not self.broker_url.startswith(("redis://", "rediss://")):
            raise ConfigError(
                f"broker URL {mask_url(self.broker_url)!r} is not a redis:// or rediss:// URL "
                "(--broker or ASKBATCH_BROKER_URL)"
            )

    def require_credentials(self) -> None:
        """Fail before anything is sent when no key could possibly work."""
        if self.api_key or self.base_url:
            return
        raise ConfigError(
            "no API key and no base URL are configured. Either set OPENAI_API_KEY "
            "(in the environment or in a .env file: OPENAI_API_KEY=sk-...), or point askbatch "
            "at an OpenAI-compatible server with --base-url http://localhost:11434/v1 "
            "--provider chat (Ollama, vLLM, llama.cpp, LiteLLM)."
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to print or store: no key, no broker password."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        out["broker_url"] = mask_url(self.broker_url)
        return out


def _parse(kind: type, raw: str, env: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
