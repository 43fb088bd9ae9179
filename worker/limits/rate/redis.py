"""The rate budget's state in one Redis hash (distributed jobs); its scripts are in `lua/`."""

from __future__ import annotations

import re
from typing import Any

from worker import lua
from worker.limits.rate import gcra

# gcra.py's constants, written into the scripts where they name them.
_CONSTANTS = {
    "RECOVER": gcra.RECOVER_PER_S,
    "BURST": gcra.BURST_SHARE,
    "MIN_FACTOR": gcra.MIN_FACTOR,
    "SLOWDOWN": gcra.SLOWDOWN,
    "LEARNED_SHARE": gcra.LEARNED_SHARE,
    "LEARNED_BURST_S": gcra.LEARNED_BURST_S,
    "PROBE_TTL_S": gcra.PROBE_TTL_S,
    "PROBE_WAIT_S": gcra.PROBE_WAIT_S,
}
_NAMES = re.compile(r"\b(" + "|".join(_CONSTANTS) + r")\b")


def _source(name: str) -> str:
    """The prelude (reading the state, the helpers) and then the script `name`."""
    source = lua.script(__package__, "prelude") + lua.script(__package__, name)
    return _NAMES.sub(lambda m: repr(_CONSTANTS[m[1]]), source)


class RedisBucket:
    """The state in one Redis hash (distributed jobs): every worker books from it."""

    def __init__(self, client: Any, key: str) -> None:
        self.key = key
        self._book = client.register_script(_source("book"))
        self._settle = client.register_script(_source("settle"))
        self._slow = client.register_script(_source("slow"))
        self._pause = client.register_script(_source("pause"))
        self._learn = client.register_script(_source("learn"))
        self.view = gcra.View()

    def _seen(self, got: list) -> tuple[float, float]:
        wait, booked, rpm, tpm, seen, factor, sent = (float(x) for x in got)
        self.view = gcra.View((int(rpm), int(tpm)), int(seen), factor, int(sent))
        return wait, booked

    def book(
        self, limits: tuple[int, int], need: tuple[float, float], horizon: float, seed: float = 0
    ) -> tuple[float, float]:
        args = [limits[0], need[0], limits[1], need[1], horizon, seed]
        return self._seen(self._book(keys=[self.key], args=args))

    def learn(self, rpm: int, tpm: int) -> None:
        self._seen(self._learn(keys=[self.key], args=[rpm, tpm, 0]))

    def probe_failed(self) -> None:
        self._learn(keys=[self.key], args=[0, 0, 1])

    def settle(self, tpm: int, delta: float, output: int | None = None) -> None:
        self._settle(keys=[self.key], args=[tpm, delta, -1 if output is None else output])

    def slow(self, pause_s: float, limited: bool) -> None:
        self._slow(keys=[self.key], args=[pause_s, int(limited)])

    def pause_left(self) -> float:
        return float(self._pause(keys=[self.key]))
