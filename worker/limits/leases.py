"""Row claims in Redis as leases: short-lived keys that a live holder keeps renewing.

A claim says "this row is being asked right now". It has to outlast a slow row (a duplicate
delivery must not ask it again) and yet lapse soon after its worker dies (the redelivered task
must be able to take the row over within minutes). A fixed TTL cannot do both; a lease of
`lease_s` renewed by a background thread every `lease_s / 3` can: it lives as long as its
holder, up to the `ttl_s` the caller asked for, and lapses `lease_s` after a SIGKILL.
Its two scripts are `lua/renew.lua` and `lua/release.lua`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis

from worker import lua

log = logging.getLogger(__name__)


def lease_for(visibility_timeout_s: float) -> float:
    """The lease length for a broker visibility timeout: well inside it, between 2 and 30 s.

    Inside it, so that by the time Redis redelivers a dead worker's task, the dead worker's
    claims have lapsed and the row is asked again at once.
    """
    return max(2.0, min(30.0, visibility_timeout_s / 3))


class Leases:
    """The claims one process holds in one Redis, renewed while held."""

    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self.redis = client
        self.lease_s = lease_s
        self._renew = client.register_script(lua.script(__package__, "renew"))
        self._release = client.register_script(lua.script(__package__, "release"))
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}  # key -> (token, renew until)
        self._thread: threading.Thread | None = None

    @staticmethod
    def token() -> str:
        return uuid.uuid4().hex

    def adopt(self, key: str, token: str, ttl_s: float) -> None:
        """Keep renewing, for up to `ttl_s`, a claim this process has just set with `token`
        (the store's begin script sets it with a lease of `lease_s`)."""
        with self._lock:
            self._held[key] = (token, time.monotonic() + ttl_s)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew_forever, name="askbatch-leases", daemon=True
                )
                self._thread.start()

    def forget(self, key: str) -> str | None:
        """Stop renewing a claim; returns its token, for the caller to delete it with."""
        with self._lock:
            held = self._held.pop(key, None)
        return held[0] if held is not None else None

    def drop(self, key: str) -> None:
        if (token := self.forget(key)) is not None:
            self._release(keys=[key], args=[token])

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease_s / 3)
            now = time.monotonic()
            with self._lock:
                # A holder past its ttl_s is stuck; let its claim lapse.
                for key in [k for k, (_, until) in self._held.items() if until < now]:
                    del self._held[key]
                held = list(self._held.items())
            if not held:
                continue
            try:
                pipe = self.redis.pipeline(transaction=False)
                for key, (token, _) in held:
                    self._renew(keys=[key], args=[token, int(self.lease_s * 1000)], client=pipe)
                pipe.execute()
            except redis.RedisError as exc:  # Redis restarting: try again next round
                log.warning("could not renew %d row claims: %s", len(held), exc)
