"""A distributed job's looks (looks.py) as a chain of Celery tasks, each sending the next.

One look at a time per job (the store's lease), and only the job's newest chain goes on: a
resume that starts a new chain ends the old one at its next look.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import openai

from worker.batch import records
from worker.batch.looks import look
from worker.errors import LookBusy, LookStopped
from worker.fatal import one_line
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
    if not store.look_lease(spec.job_id, token, LEASE_S):
        raise LookBusy(spec.job_id)
    try:
        if records.load(store, spec.job_id).state.chain != chain:
            return None  # a newer chain (a resume's) looks after the job now
        try:
            delay = look(store, spec, client).delay
        except LookStopped as stopped:  # said where `status` and the run process show it
            state = records.load(store, spec.job_id).state
            state.note = one_line(str(stopped), 400)
            records.save_state(store, spec.job_id, state)
            raise
        if delay is not None:
            following = uuid.uuid4().hex
            # Sent first, recorded second: a worker dying between the two leaves this task
            # to be delivered again, still the chain's, rather than a chain of none.
            schedule(delay, following)
            state = records.load(store, spec.job_id).state
            state.chain = following
            records.save_state(store, spec.job_id, state)
        return delay
    finally:
        store.look_release(spec.job_id, token)
