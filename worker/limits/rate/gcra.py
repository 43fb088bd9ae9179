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

# A limit learned from the server's x-ratelimit-* headers: servers enforce a per-minute limit
# over periods as short as a second, so only 50 ms worth goes at once, and the pace is just
# under the limit (the server's own count and ours drift a little).
AUTO = -1  # as a limit: learn it from the headers
# Measured (python -m bench autolimit, 60,000 TPM, 4 workers): at 0.94 the job reached 0.88 of
# the limit; at 0.96, 0.90 with 0.8 % 429s; at 0.95, 0.91 with none.
LEARNED_SHARE = 0.95
LEARNED_BURST_S = 0.05
# Before any header has been seen, one request (the probe) goes alone; another may go if its
# answer has not come within PROBE_TTL_S (it may be a slow one, or its worker died).
PROBE_TTL_S = 2.0
PROBE_WAIT_S = 0.2  # how soon a request held back by the probe asks again

REQUESTS, TOKENS = 0, 1
UNSEEN, LEARNED, PLAIN = 0, 1, 2  # what the job's answers have said of the limits


def shape(limit: int, factor: float, learned: bool = False) -> tuple[float, float]:
    """(burst, rate per second) for a limit per minute and the current slow-down factor."""
    if learned:
        burst = max(1.0, float(int(limit * LEARNED_BURST_S / 60.0)))
        return burst, limit * LEARNED_SHARE / 60.0 * factor
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
    # Learned from the headers (worker/limits/rate/headers.py): requests and tokens per minute.
    learned: tuple[int, int] = (0, 0)
    seen: int = UNSEEN
    probe_at: float = 0.0  # when the probe went, before anything was seen
    sent: int = 0  # requests booked, by every worker: the rate reached

    def expected(self, seed: float) -> float:
        return self.out_sum / self.out_n if self.out_n else seed

    def limit(self, given: int, kind: int) -> tuple[int, bool]:
        """(limit per minute, learned?) for a limit as given: a number, 0 for none, or AUTO."""
        if given != AUTO:
            return max(0, given), False
        return self.learned[kind], bool(self.learned[kind])


@dataclass(frozen=True, slots=True)
class View:
    """What a booking saw of the shared state: the limits learned, whether the answers said
    anything of them, the rate factor after 429s, and the requests booked so far."""

    learned: tuple[int, int] = (0, 0)
    seen: int = UNSEEN
    factor: float = 1.0
    sent: int = 0

    @classmethod
    def of(cls, state: State, now: float) -> View:
        factor = recovered(state.factor, now - state.hit_at)
        return cls(state.learned, state.seen, factor, state.sent)


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

    A limit given as AUTO is the one learned from the headers: none until they are seen, and
    until then (with no limit given at all) one probe at a time.

    Returns (start delay >= 0, tokens booked) with the state updated, or (-w, 0) when it cannot
    start within `horizon`: nothing is booked, try again in w."""
    own = [state.limit(limits[i], i) for i in (REQUESTS, TOKENS)]
    if AUTO in limits and state.seen == UNSEEN and not any(limits[i] > 0 for i in (0, 1)):
        if now - state.probe_at < PROBE_TTL_S:
            return -PROBE_WAIT_S, 0.0
        state.probe_at = now
        state.sent += 1
        return 0.0, 0.0
    costs = (need[REQUESTS], need[TOKENS] + state.expected(seed) if own[TOKENS][0] else 0.0)
    factor = recovered(state.factor, now - state.hit_at)
    start = max(now, state.pause)
    shapes = []
    for i in (REQUESTS, TOKENS):
        if own[i][0] <= 0:
            shapes.append(None)
            continue
        burst, rate = shape(own[i][0], factor, own[i][1])
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
    state.sent += 1
    return wait, costs[TOKENS]


def settle(state: State, now: float, tpm: int, delta: float, output: int | None = None) -> None:
    """Give back (delta < 0) or pay for (delta > 0) tokens once the real usage is known, and
    learn the answer's length (`output` tokens)."""
    if output is not None:
        state.out_sum += output
        state.out_n += 1
    limit, learned = state.limit(tpm, TOKENS)
    if limit > 0 and delta and state.tat[TOKENS]:
        rate = shape(limit, recovered(state.factor, now - state.hit_at), learned)[1]
        state.tat = (state.tat[REQUESTS], state.tat[TOKENS] + delta / rate)


def learn(state: State, rpm: int, tpm: int) -> None:
    """What an answer's headers said: the limits per minute (0: not sent), or none at all.
    A job whose answers carry no such header (a local server) is not paced; one limit
    missing from a later answer keeps what was learned of it."""
    if rpm or tpm:
        state.learned = (rpm or state.learned[REQUESTS], tpm or state.learned[TOKENS])
        state.seen = LEARNED
    elif state.seen == UNSEEN:
        state.seen = PLAIN
    state.probe_at = 0.0


def probe_failed(state: State) -> None:
    """The probe got no answer that says anything (a connection error): the next may go."""
    state.probe_at = 0.0


def slow(state: State, now: float, pause_s: float, limited: bool) -> None:
    """The server said slow down: pause every request for `pause_s`; after a 429
    (`limited`) also lower the rate, once for a run of 429s within a second."""
    state.pause = max(state.pause, now + pause_s)
    if limited and now - state.hit_at > 1.0:
        state.factor = max(MIN_FACTOR, recovered(state.factor, now - state.hit_at) * SLOWDOWN)
        state.hit_at = now
