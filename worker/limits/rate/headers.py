"""What the server's headers say about its rate limits: `x-ratelimit-*`, read per thread.

OpenAI sends, on every answer, `x-ratelimit-limit-`, `-remaining-` and `-reset-` for
`requests`, `tokens` and (for a project with its own cap) `project-tokens`; resets read like
"1s", "6m0s", "20ms" or "1h2m3.5s".
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

LOW_WATER = 0.05  # of the server's limit: below this remaining, pace what is left

_seen = threading.local()


def remember_headers(response: Any) -> None:
    """httpx response hook: keep the last response's headers of this thread (the SDK calls
    are synchronous, so the thread that sent a request reads them right after)."""
    _seen.headers = response.headers


def last_headers() -> Mapping[str, str] | None:
    """The headers of this thread's last response, once: the next call returns None."""
    headers = getattr(_seen, "headers", None)
    _seen.headers = None
    return headers


_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|us|µs|ns|h|m|s))+")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
KINDS = ("requests", "tokens", "project-tokens")


def duration_s(text: str) -> float | None:
    """OpenAI's reset durations (Go's time.Duration): "1s", "6m0s", "20ms", "1h2m3.5s",
    "350us"; or plain seconds. None for anything else."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _WHOLE.fullmatch(text):
            return None
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    return seconds if seconds >= 0 else None


def _count(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(float(raw.strip()))
    except ValueError:
        return None
    return value if value >= 0 else None


def server_limits(headers: Mapping[str, str] | None) -> tuple[int, int] | None:
    """(requests, tokens) per minute that the headers allow (0: not said), or None when they
    say nothing of a limit. The tokens are the lower of the key's and the project's."""
    if headers is None:
        return None
    rpm = _count(headers, "x-ratelimit-limit-requests") or 0
    tokens = [_count(headers, f"x-ratelimit-limit-{k}") for k in ("tokens", "project-tokens")]
    tpm = min((t for t in tokens if t), default=0)
    return (rpm, tpm) if rpm or tpm else None


def low_remaining_pause(headers: Mapping[str, str]) -> float:
    """Seconds to hold the next request when the server says little is left, else 0: what
    remains is spread evenly over the time until it resets."""
    pause = 0.0
    for kind in KINDS:
        left = _count(headers, f"x-ratelimit-remaining-{kind}")
        whole = _count(headers, f"x-ratelimit-limit-{kind}")
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        if left is None or whole is None or reset is None:
            continue
        reset_s = duration_s(reset)
        if reset_s is None or left > max(1, whole * LOW_WATER):
            continue
        pause = max(pause, reset_s / (left + 1))
    return pause
