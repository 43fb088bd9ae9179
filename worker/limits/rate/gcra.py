"""The rate budget's arithmetic (GCRA): book a request, settle it, slow down after a 429.

Pure functions over a `State`; memory.py runs them under a lock, and redis.py's Lua scripts
run the same arithmetic on the Redis server. Keep the two in step; tests run both on the same
cases.
"""

from __future__ import annotations

from dataclasses import dataclass

BURST_SHARE = 0.01  # of the limit, may go at once
SLOWDOWN = 0.7  # the rate after a 429, as a share of the rate before it
MIN_FACTOR = 0.1
RECOVER_PER_S = 0.02  # of the limit, regained each second without a 429

REQUESTS, TOKENS = 0, 1


def shape(limit: int, factor: float) -> tuple[float, float]:
    """(burst, rate per second) for a limit per minute and the current slow-down factor."""
    burst = max(1.0, float(int(limit * BURST_SHARE)))
    rate = max(limit - 2 * burst, limit / 2) / 60.0 * factor
    return burst, rate


def recovered(factor: float, since_s: float) -> float:
    return min(1.0, factor + RECOVER_PER_S * max(0.0, since_s))


@dataclass(slots=True)
class State:
    """One budget's state (the same fields the Redis hash holds); times in seconds."""

    tat: tuple[float, float] = (0.0, 0.0)  # theoretical arrival time: requests, tokens
    factor: float = 1.0  # the rate as a share of the limit, after 429s
    hit_at: float = 0.0  # when the factor was last lowered
    pause: float = 0.0  # no request starts before this
    # Answer tokens seen so far, by every worker: their mean is the answer expected.
    out_sum: float = 0.0
    out_n: int = 0

    def expected(self, seed: float) -> float:
        return self.out_sum / self.out_n if self.out_n else seed


def book(
    state: State,
    now: float,
    limits: tuple[int, int],
    need: tuple[float, float],
    horizon: float,
    seed: float = 0.0,
) -> tuple[float, float]:
    """Book a request of `need` = (requests, prompt tokens): the tokens booked are the prompt
    plus the answer expected (the mean of the answers so far, else `seed`).

    Returns (start delay >= 0, tokens booked) with the state updated, or (-w, 0) when it cannot
    start within `horizon`: nothing is booked, try again in w."""
    costs = (need[REQUESTS], need[TOKENS] + state.expected(seed) if limits[TOKENS] else 0.0)
    factor = recovered(state.factor, now - state.hit_at)
    start = max(now, state.pause)
    shapes = []
    for i in (REQUESTS, TOKENS):
        if limits[i] <= 0:
            shapes.append(None)
            continue
        burst, rate = shape(limits[i], factor)
        tat = max(state.tat[i], now)
        # A request larger than the burst starts once the bucket is full.
        start = max(start, tat + (costs[i] - max(burst, costs[i])) / rate)
        shapes.append((tat, rate))
    wait = start - now
    if wait > horizon:
        return -(wait - horizon), 0.0
    tat = list(state.tat)
    for i, got in enumerate(shapes):
        if got is not None:
            tat[i] = max(got[0], start) + costs[i] / got[1]
    state.tat = (tat[0], tat[1])
    return wait, costs[TOKENS]


def settle(state: State, now: float, tpm: int, delta: float, output: int | None = None) -> None:
    """Give back (delta < 0) or pay for (delta > 0) tokens once the real usage is known, and
    learn the answer's length (`output` tokens)."""
    if output is not None:
        state.out_sum += output
        state.out_n += 1
    if tpm > 0 and delta and state.tat[TOKENS]:
        rate = shape(tpm, recovered(state.factor, now - state.hit_at))[1]
        state.tat = (state.tat[REQUESTS], state.tat[TOKENS] + delta / rate)


def slow(state: State, now: float, pause_s: float, limited: bool) -> None:
    """The server said slow down: pause every request for `pause_s`; after a 429
    (`limited`) also lower the rate, once for a run of 429s within a second."""
    state.pause = max(state.pause, now + pause_s)
    if limited and now - state.hit_at > 1.0:
        state.factor = max(MIN_FACTOR, recovered(state.factor, now - state.hit_at) * SLOWDOWN)
        state.hit_at = now
