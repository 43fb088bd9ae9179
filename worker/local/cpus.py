"""How many cores the local model server may use: all of them, those idle now, and its slots."""

from __future__ import annotations

import os
import time


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of every core since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def free_cores(sample_s: float = 0.5) -> int:
    """Cores that other work leaves idle now (measured over sample_s), at least one: llama.cpp
    slows down sharply, not up, when its threads outnumber them. Where /proc/stat is not to
    be read, the last minute's load average."""
    n = cores()
    try:
        idle0, total0 = _cpu_times()
        time.sleep(sample_s)
        idle1, total1 = _cpu_times()
        share = (idle1 - idle0) / max(1, total1 - total0)
        idle = share * (os.cpu_count() or n)
    except (OSError, ValueError, IndexError):
        idle = n - os.getloadavg()[0]
    return max(1, min(n, round(idle)))


def default_slots() -> int:
    """Requests answered at once: two per core (continuous batching makes the second one on
    a core nearly free), at most 8."""
    return max(1, min(8, 2 * cores()))
