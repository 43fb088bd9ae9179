"""The store's batch records on both backends, and crash safety between uploading a file and
recording its batch: a look finds a batch created for a recorded file (by its metadata)
instead of creating a second one."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import API_KEY
from tests.double.fixture import BATCH_OPTIONS
from tests.jobtools import asked, fresh_db
from worker.batch import api as batch_api
from worker.batch import looks, records, rounds, sending
from worker.batch.lines import LineBuilder, write_files
from worker.batch.records import BatchRecord
from worker.models import COMPLETED, JobSpec, Row
from worker.providers.base import JobContext
from worker.store import LocalStore, RedisStore

SPEC = JobSpec(job_id="20250301-142501-abcdef", provider="responses", model="gpt-5-mini",
               total=3, batch=True)  # fmt: skip
ROWS = [Row(i, str(i + 1), f"crash question {i}") for i in range(3)]


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_server):
    if request.param == "sqlite":
        return LocalStore(tmp_path)
    return RedisStore(fresh_db(redis_server.url, 9))


def test_rows_records_and_the_lease_on_both_backends(store):
    store.create_job(SPEC)
    store.rows_put(SPEC.job_id, [r.to_json() for r in ROWS])
    got = store.rows_get(SPEC.job_id, [2, 0, 7])
    assert sorted(got) == [0, 2] and Row.from_json(got[2]) == ROWS[2]
    record = BatchRecord(key="file-1", seq=1, model="gpt-5-mini", rows=[[0, 1], [1, 1]])
    records.save(store, SPEC.job_id, record)
    rounds.save_threads(store, SPEC.job_id, [[0, 2], [1]])
    record.batch_id = "batch_1"
    records.save(store, SPEC.job_id, record)  # the second write replaces the first
    found, state, extras = records.load(store, SPEC.job_id)
    assert [(r.key, r.batch_id, list(r.rows)) for r in found] == [
        ("file-1", "batch_1", [(0, 1), (1, 1)])
    ]
    assert state.chain == "" and rounds.load_threads(extras[rounds.THREADS_KEY]).earlier(2) == [0]
    assert store.look_lease(SPEC.job_id, "a", 30)
    if isinstance(store, RedisStore):
        assert not store.look_lease(SPEC.job_id, "b", 30), "one look at a time"
        store.look_release(SPEC.job_id, "b")  # not its lease: kept
        assert not store.look_lease(SPEC.job_id, "c", 30)
    store.look_release(SPEC.job_id, "a")
    assert store.look_lease(SPEC.job_id, "d", 30)


@pytest.fixture
def client(api):
    api.configure(**BATCH_OPTIONS)
    yield openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    api.configure(**BATCH_OPTIONS)


def uploaded(tmp_path, client):
    """A job's store with its rows, and its one file of lines uploaded."""
    store = LocalStore(tmp_path)
    store.create_job(SPEC)
    store.rows_put(SPEC.job_id, [r.to_json() for r in ROWS])
    builder = LineBuilder(JobContext(SPEC))
    lines = ((SPEC.model, r.index, 1, builder.line(r, 1, [])) for r in ROWS)
    (part,) = write_files(lines, 50_000, str(tmp_path))
    return store, builder, part, batch_api.upload(client, part.path)


def looks_until_done(store, client, spec=SPEC):
    look = looks.look(store, spec, client)
    while look.delay is not None:
        time.sleep(min(look.delay, 0.2))
        look = looks.look(store, spec, client)


def test_a_batch_created_but_not_recorded_is_found_not_made_again(tmp_path, api, client):
    """The process died after `batches.create` and before recording the batch id."""
    store, builder, part, file_id = uploaded(tmp_path, client)
    records.save(store, SPEC.job_id, BatchRecord(file_id, 1, part.model, part.rows))
    batch_api.create(client, SPEC.job_id, file_id, builder.url)  # ...and then the kill
    assert api.stats()["batches"]["created"] == 1
    looks.look(store, SPEC, client)
    (found,) = records.load(store, SPEC.job_id)[0]
    assert found.batch_id.startswith("batch_"), "found through its metadata"
    looks_until_done(store, client)
    assert api.stats()["batches"]["created"] == 1, "no second batch for the same lines"
    assert {r.status for r in store.get(SPEC.job_id, range(3)).values()} == {COMPLETED}
    assert sorted(asked(api).values()) == [1, 1, 1]


def test_an_uploaded_file_without_a_batch_gets_one(tmp_path, api, client):
    """The process died after recording the upload and before `batches.create`."""
    store, _, part, file_id = uploaded(tmp_path, client)
    records.save(store, SPEC.job_id, BatchRecord(file_id, 1, part.model, part.rows))
    looks_until_done(store, client)
    assert api.stats()["batches"]["created"] == 1
    assert len(store.get(SPEC.job_id, range(3))) == 3


def test_a_batch_read_twice_runs_its_tools_once(tmp_path, api, client):
    """A look that died after running a line's tools, before marking its batch read."""
    from dataclasses import replace

    from worker.batch.toolrounds import CONTINUING
    from worker.profile import Profile, Tool

    expression = {"type": "object", "properties": {"expression": {"type": "string"}}}
    tool = Tool("evaluate", "worker.builtin_tools:evaluate", parameters=expression)
    spec = replace(SPEC, total=1, profile=Profile(tools=(tool,)).to_json())
    store = LocalStore(tmp_path)
    store.create_job(spec)
    row = Row(0, "1", 'sum [[call:evaluate:{"expression": "2+3"}]]')
    store.rows_put(spec.job_id, [row.to_json()])
    rounds.save_threads(store, spec.job_id, [])
    looks.look(store, spec, client)  # round 1 submitted
    deadline = time.monotonic() + 60
    while len(records.load(store, spec.job_id)[0]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the double moves a batch on when it is looked at
        looks.look(store, spec, client)  # round 1 read: the tool ran; round 2 submitted
    first = records.load(store, spec.job_id)[0][0]
    assert first.ended
    first.ended = False  # as if the look had died before recording it read
    records.save(store, spec.job_id, first)
    looks._settled.clear()
    looks.look(store, spec, client)
    so_far = store.rows_get(spec.job_id, [0])[0][CONTINUING]
    assert so_far["calls"] == {"evaluate": 1} and len(so_far["items"]) == 2
    looks_until_done(store, client, spec)
    (result,) = store.get(spec.job_id, [0]).values()
    assert result.status == COMPLETED and result.tool_calls == "evaluate x1"
    assert "5" in result.answer


def test_no_more_batches_an_hour_than_the_api_allows(tmp_path, api, client, monkeypatch):
    monkeypatch.setattr(sending, "MAX_CREATIONS_PER_HOUR", 2)  # 2,000 in life
    from dataclasses import replace

    spec = replace(SPEC, batch_max_lines=1)  # three rows: three files
    store = LocalStore(tmp_path)
    store.create_job(spec)
    store.rows_put(spec.job_id, [r.to_json() for r in ROWS])
    rounds.save_threads(store, spec.job_id, [])
    look = looks.look(store, spec, client, workdir=str(tmp_path))
    assert api.stats()["batches"]["created"] == 2
    assert "2 batches created this hour: the rest waits" in look.note
    assert look.delay is not None
    assert len(records.load(store, spec.job_id)[0]) == 2, "the third file was not uploaded"
    assert not list(tmp_path.glob("askbatch-*.jsonl")), "no file left behind"


def test_an_output_file_gone_at_the_server_is_asked_again_not_a_halt(tmp_path, api, client):
    """A batch completed, but its output file was deleted before askbatch read it (404): the
    batch is given up and its lines go again; the job neither halts nor stops."""
    store = LocalStore(tmp_path)
    store.create_job(SPEC)
    store.rows_put(SPEC.job_id, [r.to_json() for r in ROWS])
    rounds.save_threads(store, SPEC.job_id, [])
    looks.look(store, SPEC, client)  # submitted
    (record,) = records.load(store, SPEC.job_id)[0]
    deadline = time.monotonic() + 60
    while (batch := client.batches.retrieve(record.batch_id)).status != "completed":
        assert time.monotonic() < deadline, batch.status
        time.sleep(0.1)
    client.files.delete(batch.output_file_id)
    looks_until_done(store, client)
    first = records.load(store, SPEC.job_id)[0][0]
    assert first.given_up.startswith(f"its file {batch.output_file_id} is gone at the server")
    assert store.stopped(SPEC.job_id) is None, "no halt"
    results = store.get(SPEC.job_id, range(3)).values()
    assert {r.status for r in results} == {COMPLETED} and {r.attempts for r in results} == {2}
    assert api.stats()["batches"]["created"] == 2
