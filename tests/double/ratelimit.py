"""Sliding 60-second window for the optional requests-per-minute / tokens-per-minute limits."""

from collections import deque

WINDOW_S = 60.0


def _duration(seconds: float) -> str:
    # OpenAI sends resets like "1.2s" or "6m0s"; plain seconds are enough for clients.
    return f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".") + "s"


class SlidingWindow:
    """Requests accepted in the last 60 s with their token counts (0 limit = unlimited)."""

    def __init__(self, rpm: int = 0, tpm: int = 0) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def clear(self) -> None:
        self._events.clear()
        self._tokens = 0

    def _prune(self, now: float) -> None:
        events = self._events
        while events and events[0][0] <= now - WINDOW_S:
            self._tokens -= events.popleft()[1]

    def admit(self, now: float, tokens: int) -> float | None:
        """Record the request and return None, or return the seconds until it would fit."""
        self._prune(now)
        events = self._events
        wait = 0.0
        if self.rpm and len(events) >= self.rpm:
            # A slot frees when the request that pushed the count to the limit leaves.
            wait = events[len(events) - self.rpm][0] + WINDOW_S - now
        if self.tpm and self._tokens + tokens > self.tpm:
            need = self._tokens + tokens - self.tpm
            token_wait = WINDOW_S  # a request larger than the whole budget never fits
            freed = 0
            for at, count in events:
                freed += count
                if freed >= need:
                    token_wait = at + WINDOW_S - now
                    break
            wait = max(wait, token_wait)
        if wait > 0:
            return max(wait, 0.001)
        events.append((now, tokens))
        self._tokens += tokens
        return None

    def headers(self, now: float) -> dict[str, str]:
        """The x-ratelimit-* headers for the current window."""
        self._prune(now)
        events = self._events
        reset = _duration(events[0][0] + WINDOW_S - now) if events else "0s"
        headers = {}
        if self.rpm:
            headers["x-ratelimit-limit-requests"] = str(self.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(self.rpm - len(events), 0))
            headers["x-ratelimit-reset-requests"] = reset
        if self.tpm:
            headers["x-ratelimit-limit-tokens"] = str(self.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(self.tpm - self._tokens, 0))
            headers["x-ratelimit-reset-tokens"] = reset
        return headers
