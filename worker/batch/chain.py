"""A distributed job's looks (tick.py) as a chain of Celery tasks, each sending the next.

One look at a time per job (the store's lease), and only the job's newest chain goes on: a
resume that starts a new chain ends the old one at its next look.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import openai

from worker.batch import records
from worker.batch.tick import look
from worker.errors import TickBusy
from worker.models import JobSpec
from worker.store import Store

LEASE_S = 900.0  # longest a look may take (reading 50,000 lines) before another may start


def look_in_chain(
    store: Store,
    spec: JobSpec,
    client: openai.OpenAI,
    chain: str,
    schedule: Callable[[float, str], None],
) -> float | None:
    """A look, if this is the job's chain and no other look is under way; `schedule(delay,
    chain)` sends the chain's next look. Returns the delay, or None when the chain ends."""
    token = uuid.uuid4().hex
    if not store.tick_lease(spec.job_id, token, LEASE_S):
        raise TickBusy(spec.job_id)
    try:
        if records.load(store, spec.job_id).state.chain != chain:
            return None  # a newer chain (a resume's) looks after the job now
        delay = look(store, spec, client).delay
        if delay is not None:
            following = uuid.uuid4().hex
            # Sent first, recorded second: a worker dying between the two leaves this task
            # to be delivered again, still the chain's, rather than a chain of none.
            schedule(delay, following)
            _, state, _ = records.load(store, spec.job_id)
            state.chain = following
            records.save_state(store, spec.job_id, state)
        return delay
    finally:
        store.tick_release(spec.job_id, token)
