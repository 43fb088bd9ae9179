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
    "state_dir": "ASKBATCH_STATE_DIR",
}


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
        kinds = {f.name: f.type for f in fields(cls)}
        for name, env in ENV_VARS.items():
            raw = os.environ.get(env)
            if raw is not None and raw.strip() != "":
                values[name] = _parse(_KINDS[kinds[name]], raw.strip(), env)
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


# Field annotations are strings (postponed evaluation); map them to parsers.
_KINDS = {"str": str, "int": int, "float": float, "Secret": Secret}


def _parse(kind: type, raw: str, env: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
