"""Sliding window for the optional requests-per-minute / tokens-per-minute limits.

The limits are per minute; like OpenAI's, they may be enforced over a shorter `period`: with a
period of 1 s, 1,200 RPM lets at most 20 requests through in any second.
"""

import math
from collections import deque

WINDOW_S = 60.0


def _duration(seconds: float) -> str:
    # OpenAI sends resets like "1.2s" or "6m0s"; plain seconds are enough for clients.
    return f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".") + "s"


class SlidingWindow:
    """Requests accepted in the last 60 s with their token counts (0 limit = unlimited)."""

    def __init__(self, rpm: int = 0, tpm: int = 0, period: float = WINDOW_S) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.period = period or WINDOW_S
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def clear(self) -> None:
        self._events.clear()
        self._tokens = 0

    def _cap(self, per_minute: int) -> int:
        """What the limit lets through in one period."""
        return max(1, math.floor(per_minute * self.period / WINDOW_S))

    def _prune(self, now: float) -> None:
        events = self._events
        while events and events[0][0] <= now - self.period:
            self._tokens -= events.popleft()[1]

    def admit(self, now: float, tokens: int) -> float | None:
        """Record the request and return None, or return the seconds until it would fit."""
        self._prune(now)
        events = self._events
        wait = 0.0
        rpm, tpm = self._cap(self.rpm) if self.rpm else 0, self._cap(self.tpm) if self.tpm else 0
        if rpm and len(events) >= rpm:
            # A slot frees when the request that pushed the count to the limit leaves.
            wait = events[len(events) - rpm][0] + self.period - now
        if tpm and self._tokens + tokens > tpm:
            need = self._tokens + tokens - tpm
            token_wait = self.period  # a request larger than the whole budget never fits
            freed = 0
            for at, count in events:
                freed += count
                if freed >= need:
                    token_wait = at + self.period - now
                    break
            wait = max(wait, token_wait)
        if wait > 0:
            return max(wait, 0.001)
        events.append((now, tokens))
        self._tokens += tokens
        return None

    def headers(self, now: float) -> dict[str, str]:
        """The x-ratelimit-* headers for the current window: the limits per minute, and what
        is left of them at the rate of the current period."""
        self._prune(now)
        events = self._events
        reset = _duration(events[0][0] + self.period - now) if events else "0s"
        scale = WINDOW_S / self.period
        headers = {}
        if self.rpm:
            used = math.ceil(len(events) * scale)
            headers["x-ratelimit-limit-requests"] = str(self.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(self.rpm - used, 0))
            headers["x-ratelimit-reset-requests"] = reset
        if self.tpm:
            used = math.ceil(self._tokens * scale)
            headers["x-ratelimit-limit-tokens"] = str(self.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(self.tpm - used, 0))
            headers["x-ratelimit-reset-tokens"] = reset
        return headers
