"""What one process keeps for its lifetime: its settings, its store, one client per server.

A worker process builds these from its own environment; the CLI configures them from flags
before running an embedded job. Clients are shared by every thread of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import httpx2
import openai

from worker.batch.chain import look_in_chain
from worker.errors import ConfigError
from worker.limits.leases import lease_for
from worker.limits.rate.flight import flight_for
from worker.limits.rate.headers import remember_headers
from worker.local import NoLocalServer
from worker.models import FAILED, JobSpec, Row
from worker.profile import Profile, check_allowed, tool_allowlist
from worker.providers import registry
from worker.providers.base import Provider
from worker.runner import answer_rows
from worker.settings import OPENAI_URL, Settings
from worker.store import LocalStore, RedisStore, Store

_lock = threading.Lock()
_settings: Settings | None = None
_store: Store | None = None
_clients: dict[str, openai.OpenAI] = {}
_providers: dict[str, Provider] = {}
_specs: dict[str, JobSpec] = {}


def configure(settings: Settings) -> None:
    """Use these settings from now on (the CLI calls this once, before any task runs)."""
    global _settings, _store
    with _lock:
        _settings = settings
        _store = None
        _clients.clear()
        _providers.clear()
        _specs.clear()


def settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = Settings.load()
        return _settings


def store() -> Store:
    global _store
    s = settings()
    with _lock:
        if _store is None:
            if s.broker_url:
                _store = RedisStore(s.broker_url, lease_s=lease_for(s.visibility_timeout_s))
            else:
                _store = LocalStore(s.state_dir)
        return _store


def make_client(settings: Settings, base_url: str, pool: int) -> openai.OpenAI:
    """An SDK client with our retry policy (none in the SDK) and a pool sized for I/O work."""
    return openai.OpenAI(
        # Local servers ignore the key, but the SDK insists on one.
        api_key=settings.api_key or "not-needed",
        base_url=base_url or OPENAI_URL,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool),
            # The rate budget reads x-ratelimit-* from every response (worker/limits/rate).
            event_hooks={"response": [remember_headers]},
        ),
    )


def client(base_url: str) -> openai.OpenAI:
    s = settings()
    with _lock:
        if base_url not in _clients:
            pool = max(s.concurrency, s.worker_concurrency) + 8
            _clients[base_url] = make_client(s, base_url, pool)
        return _clients[base_url]


def spec_for(job_id: str) -> JobSpec:
    """The job's spec, read from the store once per process: it never changes after the job
    is created, and re-reading it for every task cost a store round trip and a JSON parse."""
    with _lock:
        spec = _specs.get(job_id)
    if spec is None:
        spec = _page_tools(store().spec(job_id))
        with _lock:
            if len(_specs) > 64:  # a long-lived worker sees many jobs
                _specs.clear()
            _specs[job_id] = spec
    return spec


def _page_tools(spec: JobSpec) -> JobSpec:
    """A job whose profile came from the page and names a tool this process does not allow
    (ASKBATCH_UI_TOOLS) is stopped: its rows fail with the reason, and no tool is imported."""
    if not spec.profile_from_page:
        return spec
    try:
        allowed = tool_allowlist(settings().ui_tools)
        check_allowed(Profile.from_json(spec.profile).tools, allowed, f"job {spec.job_id}")
    except ConfigError as exc:
        store().stop(spec.job_id, FAILED, str(exc))
        return replace(spec, profile={**spec.profile, "tools": []})
    return spec


def provider_for(spec: JobSpec) -> Provider:
    """One provider per job and process: it holds the job's imported tools."""
    with _lock:
        provider = _providers.get(spec.job_id)
    if provider is None:
        provider = _make_provider(spec)
        with _lock:
            if len(_providers) > 64:  # a long-lived worker sees many jobs
                _providers.clear()
            provider = _providers.setdefault(spec.job_id, provider)
    return provider


def solver_for(spec: JobSpec) -> Provider | None:
    """The provider a profile's [check] solves answers with (worker/check.py): the job's
    model and server, with the check's instructions and no tools or answer schema; None for
    a job without a check."""
    if not (spec.profile or {}).get("check"):
        return None  # most jobs: no profile to parse
    key = f"{spec.job_id}\0check"
    with _lock:
        solver = _providers.get(key)
    if solver is None:
        # Not the profile's max_output_tokens: a worked solution is longer than an answer
        # field, and one cut off checks nothing.
        profile = Profile.from_json(spec.profile)
        plain = Profile(model=profile.model, temperature=profile.temperature, top_p=profile.top_p)
        instructions = profile.check["instructions"]
        solver = _make_provider(replace(spec, profile=plain.to_json(), instructions=instructions))
        with _lock:
            solver = _providers.setdefault(key, solver)
    return solver


def _make_provider(spec: JobSpec) -> Provider:
    base_url = spec.base_url
    surface = registry.get(spec.provider)
    if surface.local_server and not base_url:
        # A distributed local job: each worker answers on its own server (--provider local).
        own = settings()
        if own.provider != spec.provider or not own.base_url:
            return NoLocalServer(spec)
        base_url = own.base_url
    return surface.make(client(base_url), spec)


def answer(job_id: str, rows: list[Row]) -> int:
    """Answer the rows of one thread of a job with this process's store, spec and provider:
    the body of the Celery task, and what an embedded job's threads call directly."""
    spec = spec_for(job_id)
    s = settings()
    own = store()
    # The ceiling of rows in flight: the process's threads (a worker's, or an embedded run's).
    ceiling = s.worker_concurrency if s.broker_url else s.concurrency
    flight = flight_for(own, job_id, ceiling)
    return answer_rows(own, spec, provider_for(spec), rows, flight, solver_for(spec))


def batch_look(job_id: str, chain: str, schedule: Callable[[float, str], None]) -> float | None:
    """A distributed look at a --batch job with this process's store and client: the body of
    the Celery task `askbatch.batch_look`."""
    spec = spec_for(job_id)
    return look_in_chain(store(), spec, client(spec.base_url), chain, schedule)
