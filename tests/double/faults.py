"""Fault markers in questions, and the per-question counters that make them deterministic.

A marker is ``[[name]]`` or ``[[name:arg:arg]]`` anywhere in the latest user message:
``[[429:N]]``/``[[429:N:S]]``, ``[[500:N]]``, ``[[reset:N]]`` fail the first N requests per
(question, endpoint kind); ``[[400]]`` always fails; ``[[noretry]]`` always gets a 503 with
``x-should-retry: false``; ``[[fail]]``, ``[[incomplete]]``,
``[[expired]]``, ``[[cancelled]]``, ``[[requires_action]]``, ``[[never]]`` choose the outcome;
``[[sleep:S]]`` adds latency; ``[[cached:N]]``, ``[[reasoning:N]]`` fill usage details;
``[[callagain]]`` repeats function-tool rounds; ``[[flexbusy:N]]`` answers the first N flex
requests 429 resource-unavailable; ``[[invalid]]`` fails a batch line at validation.
``[[call:NAME[:JSON-ARGS]]]``, ``[[badjson]]``, ``[[wrongschema]]`` and ``[[false]]`` are read
by ``expect`` (``marked_calls``, ``final_answer``).
"""

import re
from dataclasses import dataclass

_MARKER = re.compile(r"\[\[(\w+)((?::[^\]:]*)*)\]\]")

# Markers that decide how a run/response ends; the first one in the text wins.
OUTCOMES = frozenset({"fail", "incomplete", "expired", "cancelled", "requires_action", "never"})


@dataclass(frozen=True, slots=True)
class Markers:
    n429: int = 0
    retry_after: float = 0.0
    n500: int = 0
    nreset: int = 0
    bad_request: bool = False
    no_retry: bool = False
    outcome: str | None = None
    sleep: float = 0.0
    cached: int = 0
    reasoning: int = 0
    call_again: bool = False
    flex_busy: int = 0
    invalid: bool = False

    @property
    def transport(self) -> bool:
        return bool(self.n429 or self.n500 or self.nreset)


NO_MARKERS = Markers()


def _num(args: list[str], index: int, default: float = 0.0) -> float:
    try:
        return float(args[index])
    except (IndexError, ValueError):
        return default


def parse_markers(text: str) -> Markers:
    if "[[" not in text:  # fast path: most benchmark questions carry no marker
        return NO_MARKERS
    found: dict = {}
    for name, raw_args in _MARKER.findall(text):
        args = raw_args.split(":")[1:]
        if name == "429":
            found["n429"] = int(_num(args, 0, 1))
            found["retry_after"] = _num(args, 1)
        elif name == "500":
            found["n500"] = int(_num(args, 0, 1))
        elif name == "reset":
            found["nreset"] = int(_num(args, 0, 1))
        elif name == "400":
            found["bad_request"] = True
        elif name == "noretry":
            found["no_retry"] = True
        elif name in OUTCOMES:
            found.setdefault("outcome", name)
        elif name == "sleep":
            found["sleep"] = _num(args, 0)
        elif name == "cached":
            found["cached"] = int(_num(args, 0))
        elif name == "reasoning":
            found["reasoning"] = int(_num(args, 0))
        elif name == "callagain":
            found["call_again"] = True
        elif name == "flexbusy":
            found["flex_busy"] = int(_num(args, 0, 1))
        elif name == "invalid":
            found["invalid"] = True
    return Markers(**found) if found else NO_MARKERS


class FaultCounter:
    """Counts marked requests per (question, endpoint kind).

    Transport faults apply in a fixed order: with ``[[429:2]] [[500:1]] [[reset:1]]``
    requests 1-2 get 429, request 3 gets 500, request 4 is reset, later ones go through.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def clear(self) -> None:
        self._seen.clear()

    def flex_busy(self, question: str, kind: str, markers: Markers) -> bool:
        """Whether this flex request is one of the first ``[[flexbusy:N]]`` of its question."""
        if not markers.flex_busy:
            return False
        key = (question, f"{kind}:flex")
        index = self._seen.get(key, 0)
        self._seen[key] = index + 1
        return index < markers.flex_busy

    def transport_fault(self, question: str, kind: str, markers: Markers) -> str | None:
        """Return "429", "500", "reset" or None for this request."""
        if not markers.transport:
            return None
        key = (question, kind)
        index = self._seen.get(key, 0)
        self._seen[key] = index + 1
        for fault, count in (
            ("429", markers.n429),
            ("500", markers.n500),
            ("reset", markers.nreset),
        ):
            if index < count:
                return fault
            index -= count
        return None
