"""The benchmark's cases (which group runs what, at which load) and the outcome of one."""

from __future__ import annotations

from dataclasses import dataclass, field

PROVIDERS = ("responses", "chat", "assistants")


@dataclass
class Case:
    group: str
    provider: str
    mode: str  # embedded | workers | baseline
    n: int
    latency: float
    concurrency: int = 64
    workers: int = 0
    rpm: int = 0
    tpm: int = 0


@dataclass
class Outcome:
    case: Case
    wall_s: float = 0.0
    qps: float = 0.0
    ideal: float = 0.0
    cpu_ms_q: float = 0.0
    run_mb: float = 0.0
    worker_mb: float = 0.0
    n429: int = 0
    requests: int = 0
    double_cpu: float = 0.0
    redis_cpu: float = 0.0
    completed: int = 0
    tokens_q: float = 0.0
    steady_qps: float = 0.0  # questions/s between the first and the last request the double saw
    notes: list[str] = field(default_factory=list)


def cases(groups: list[str], scale: float) -> list[Case]:
    def n(count: int) -> int:
        return max(64, int(count * scale))

    out: list[Case] = []
    if "latency" in groups:
        for provider in PROVIDERS:
            out.append(Case("latency", provider, "baseline", n(2000), 1.0))
            out.append(Case("latency", provider, "embedded", n(2000), 1.0))
            out.append(Case("latency", provider, "workers", n(2000), 1.0, workers=1))
            out.append(Case("latency", provider, "workers", n(2000), 1.0, workers=4))
    if "cpu" in groups:
        for provider in ("responses", "chat"):
            out.append(Case("cpu", provider, "baseline", n(5000), 0.2))
            out.append(Case("cpu", provider, "embedded", n(5000), 0.2))
            out.append(Case("cpu", provider, "workers", n(5000), 0.2, workers=4))
    if "rpm" in groups:
        out.append(Case("rpm", "chat", "workers", n(1500), 1.0, workers=4, rpm=600))
    if "tpm" in groups:
        out.append(Case("tpm", "chat", "workers", n(1500), 1.0, workers=4, tpm=12000))
    if "large" in groups:
        out.append(Case("large", "chat", "workers", n(100_000), 0.0, workers=1))
    return out
