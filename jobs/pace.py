"""How fast a job runs, from its processes' reports: limit, rate, rows in flight, what bounds it.

The reports are written by worker/limits/rate/flight.py, one per process, every second.
"""

from __future__ import annotations

from worker.limits.rate.flight import LIVE_S
from worker.store import Pacing

# A job whose rate came within this share of what its limits allow was bound by them.
LIMIT_BOUND = 0.8
# A process that spent this share of a core was bound by the machine (Python runs one core).
CPU_BOUND = 0.8


def reports(store: Pacing, job_id: str, within_s: float = LIVE_S) -> list[dict]:
    """The reports of the job's processes written in the last `within_s` seconds."""
    try:
        return store.pace(job_id, "", None, within_s)
    except Exception:  # a store without the job's pace yet, or a hiccup: say nothing
        return []


def limit_text(rows: list[dict]) -> str:
    """ "1,200 RPM, 200,000 TPM (learned)", "600 RPM (--rpm)", or "" without a limit."""
    rpm = max((r.get("rpm", 0) for r in rows), default=0)
    tpm = max((r.get("tpm", 0) for r in rows), default=0)
    parts = [f"{rpm:,} RPM"] * bool(rpm) + [f"{tpm:,} TPM"] * bool(tpm)
    if not parts:
        return ""
    learned = any(r.get("learned") for r in rows)
    return ", ".join(parts) + (" (learned)" if learned else " (given)")


def line(rows: list[dict]) -> str:
    """For the progress line and status: limit, rate reached and rows in flight now."""
    if not rows:
        return ""
    rate = sum(r.get("rate", 0.0) for r in rows)
    active = sum(r.get("active", 0) for r in rows)
    limit = sum(r.get("limit", 0) for r in rows)
    limits = limit_text(rows)
    if not limits and any(r.get("allowed") == 0 for r in rows):
        limits = "not known yet"
    head = f"limit {limits}; " if limits else "no rate limit; "
    return f"{head}{rate * 60:,.0f} requests/min, {active} in flight (up to {limit})"


def bound(rows: list[dict]) -> str:
    """For the end-of-run summary: the rate over the run and what bounded it."""
    rows = [r for r in rows if r.get("first_at") and r.get("sent")]
    if not rows:
        return ""
    span = max(r["last_at"] for r in rows) - min(r["first_at"] for r in rows)
    if span <= 0:
        return ""
    rate = sum(r["sent"] for r in rows) / span
    allowed = [r["allowed"] for r in rows if r.get("allowed")]
    in_flight = sum(r.get("limit", 0) for r in rows)
    occupancy = [r["occupancy_s"] for r in rows if r.get("occupancy_s")]
    per_request = sum(occupancy) / len(occupancy) if occupancy else 0.0
    head = f"rate: {rate * 60:,.0f} requests/min"
    if allowed and rate >= LIMIT_BOUND * max(allowed):
        share = rate / max(allowed)
        return (
            f"{head}, {share:.0%} of what the limit allows: bound by the account's limit "
            f"({limit_text(rows)})"
        )
    busiest = max(r.get("cpu", 0.0) for r in rows)
    if busiest >= CPU_BOUND:
        return (
            f"{head}: bound by the local machine (a process used {busiest:.0%} of a core; "
            "more workers, on more cores, would go faster)"
        )
    ceiling = sum(r.get("ceiling", 0) for r in rows)
    at_ceiling = in_flight >= ceiling
    tail = f"; at the --concurrency ceiling of {ceiling}" if at_ceiling else ""
    return (
        f"{head}: bound by the latency ({in_flight} in flight at {per_request:.2f}s a "
        f"request{tail})"
    )
