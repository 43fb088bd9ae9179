"""What the server's headers say about its rate limits: `x-ratelimit-*`, read per thread."""

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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration_s(text: str) -> float | None:
    """OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s"; or plain seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNITS[u] for n, u in parts) if parts else None


def low_remaining_pause(headers: Mapping[str, str]) -> float:
    """Seconds to hold the next request when the server says little is left, else 0: what
    remains is spread evenly over the time until it resets."""
    pause = 0.0
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        limit = headers.get(f"x-ratelimit-limit-{kind}")
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        if remaining is None or limit is None or reset is None:
            continue
        try:
            left, whole = int(remaining), int(limit)
        except ValueError:
            continue
        reset_s = duration_s(reset)
        if reset_s is None or left > max(1, whole * LOW_WATER):
            continue
        pause = max(pause, reset_s / (left + 1))
    return pause
