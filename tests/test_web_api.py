"""`askbatch serve`'s JSON API, against the real command (from the runtime environment), the
double, a real redis-server and real `askbatch worker` processes."""

from __future__ import annotations

import pytest

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.jobtools import fresh_db
from tests.webtools import Server, assert_same_answers, csv_rows, priced_env, wait_job


def _sheet(tmp_path, n, marker="", name="sheet.csv", fail=()):
    rows = [[f"q{i}", f"what is {i} + {i}? {marker}" + (" [[400]]" if i in fail else "")]
            for i in range(n)]  # fmt: skip
    return write_csv(tmp_path / name, ["id", "question"], rows)


def _start(client, sheet, **choices) -> str:
    with sheet.open("rb") as f:
        est = client.post("/api/estimate", files={"worksheet": (sheet.name, f)}, data=choices)
    assert est.status_code == 200, est.text
    started = client.post("/api/jobs", data={"upload": est.json()["upload"], **choices})
    assert started.status_code == 201, started.text
    return started.json()["job"]


@pytest.fixture
def embedded(api, tmp_path):
    env = priced_env(tmp_path, api)
    server = Server.start(env, tmp_path / "serve.log")
    yield server, env
    server.stop()
    assert API_KEY not in server.text


def test_upload_errors_are_the_cli_intake_messages(embedded, tmp_path):
    server, env = embedded
    bad = write_csv(tmp_path / "bad.csv", ["id", "prompt"], [["1", "hi"]])
    with server.client() as c, bad.open("rb") as f:
        r = c.post("/api/estimate", files={"worksheet": ("bad.csv", f)})
    assert r.status_code == 400
    message = r.json()["error"]
    cli = askbatch(["run", str(bad)], env, tmp_path / "x.csv")
    assert cli.code == 2
    # The same message, naming the uploaded file by its own name, not the server's folder.
    assert message.startswith("bad.csv: ") and "question" in message
    assert message.split(": ", 1)[1] in cli.stderr
    assert "Traceback" not in server.text and "uploads" not in message


def test_embedded_job_reaches_100_and_downloads_what_run_writes(embedded, tmp_path):
    server, env = embedded
    sheet = _sheet(tmp_path, 12, fail={3})
    with server.client() as c:
        est = c.post(
            "/api/estimate", files={"worksheet": (sheet.name, sheet.read_bytes())}, data={}
        ).json()
        assert est["rows"] == 12 and "gpt-5-mini" in est["text"]
        assert float(est["high_usd"]) > float(est["low_usd"]) > 0
        job_id = _start(c, sheet)
        facts = wait_job(c, job_id, lambda f: f["state"] == "finished")
        assert facts["percent"] == 100.0 and facts["done"] == 12
        assert facts["by_status"] == {"completed": 11, "failed": 1}
        assert [f["row"] for f in facts["failures"]] == [4] and facts["failures"][0]["error"]
        assert facts["tokens"]["total"] > 0 and float(facts["cost_usd"]) > 0
        assert list(facts["cost_by_model"]) == ["gpt-5-mini"]
        assert facts["settings"]["base_url"] == env["OPENAI_BASE_URL"]
        listed = c.get("/api/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [job_id]
        got = c.get(f"/api/jobs/{job_id}/answers.csv")
        assert got.headers["content-type"].startswith("text/csv")
        report = c.get(f"/api/jobs/{job_id}/report.html").text
        assert "<svg" in report and "askbatch report" in report
        everything = " ".join(
            [got.text, report, c.get("/api/jobs").text, c.get(f"/api/jobs/{job_id}").text]
        )
    assert API_KEY not in everything
    run = askbatch(["run", str(sheet), "-o", str(tmp_path / "cli.csv")], env, tmp_path / "cli.csv")
    assert run.code == 1, run.stderr
    assert_same_answers(csv_rows(got.text), run.rows())


def test_cancel_then_retry_failed_rows(api, tmp_path):
    # Four rows at a time, so that most are not started when the cancel comes.
    server = Server.start(priced_env(tmp_path, api), tmp_path / "serve.log", "--concurrency", "4")
    sheet = _sheet(tmp_path, 40, marker="[[sleep:0.3]]")
    with server.client() as c:
        job_id = _start(c, sheet)
        wait_job(c, job_id, lambda f: f["done"] >= 2)
        r = c.post(f"/api/jobs/{job_id}/cancel")
        assert r.status_code == 200 and "cancel" in r.json()["message"]
        facts = wait_job(c, job_id, lambda f: f["state"] == "finished")
        assert facts["by_status"].get("cancelled", 0) > 0
        assert facts["by_status"].get("completed", 0) < 40
        r = c.post(f"/api/jobs/{job_id}/retry")
        assert r.status_code == 200, r.text
        facts = wait_job(c, job_id, lambda f: f["state"] == "finished")
        assert facts["by_status"] == {"completed": 40}
    server.stop()


def test_remote_page_needs_the_token(api, tmp_path):
    env = base_env(tmp_path, api)
    token = "t0k3n-for-the-test-0123456789"
    env["ASKBATCH_UI_TOKEN"] = token
    env["ASKBATCH_UI_MAX_UPLOAD_MB"] = "0.01"
    server = Server.start(env, tmp_path / "serve.log", "--host", "0.0.0.0")
    try:
        with server.client(token=False) as c:
            assert c.get("/api/jobs").status_code == 401
            assert c.get("/").status_code == 401
            assert c.get("/api/jobs", headers={"authorization": "Bearer wrong"}).status_code == 401
            entered = c.get(f"/?token={token}")
            assert entered.status_code == 303 and entered.headers["location"] == "/"
            assert c.get("/api/jobs").status_code == 200  # the cookie it set
            page = c.get("/")
            assert page.status_code == 200 and "/static/index.js" in page.text
            assert "default-src 'self'" in page.headers["content-security-policy"]
            big = c.post("/api/estimate", files={"worksheet": ("big.csv", b"x" * 20_000)})
            assert big.status_code == 413 and "0.01 MB" in big.json()["error"]
            foreign = c.post("/api/jobs", headers={"origin": "http://evil.example"})
            assert foreign.status_code == 403
    finally:
        server.stop()
    assert token not in server.text and API_KEY not in server.text


def test_loopback_page_refuses_other_host_names(embedded):
    server, _ = embedded
    with server.client() as c:
        assert c.get("/api/jobs", headers={"host": "attacker.example:8000"}).status_code == 400
        assert c.get("/api/jobs/20250101-000000-abcdef").status_code == 404
        assert "no job" in c.get("/api/jobs/20250101-000000-abcdef").json()["error"]


def test_distributed_jobs_go_to_the_workers_and_embedded_ones_are_listed(
    api, redis_server, workers, tmp_path
):
    # The workers fixture's Redis database 0; the server lists its jobs and sends new ones.
    env = priced_env(tmp_path, api)
    local = askbatch(
        ["run", str(_sheet(tmp_path, 3, name="local.csv")), "-q"], env, tmp_path / "l.csv"
    )
    assert local.code == 0, local.stderr
    env["ASKBATCH_BROKER_URL"] = redis_server.url
    server = Server.start(env, tmp_path / "serve.log")
    try:
        with server.client() as c:
            config = c.get("/api/config").json()
            assert config["mode"] == "distributed"
            sheet = _sheet(tmp_path, 10)
            job_id = _start(c, sheet, model="gpt-4o-mini")
            facts = wait_job(c, job_id, lambda f: f["state"] == "finished")
            assert facts["mode"] == "distributed" and facts["by_status"] == {"completed": 10}
            assert facts["settings"]["model"] == "gpt-4o-mini"
            listed = {j["id"]: j for j in c.get("/api/jobs").json()["jobs"]}
            assert job_id in listed
            assert any(j["mode"] == "embedded" and j["worksheet"] == "local.csv"
                       for j in listed.values())  # fmt: skip
            embedded_id = next(i for i, j in listed.items() if j["mode"] == "embedded")
            r = c.post(f"/api/jobs/{embedded_id}/resume")
            assert r.status_code == 400 and "askbatch resume" in r.json()["error"]
            got = csv_rows(c.get(f"/api/jobs/{job_id}/answers.csv").text)
    finally:
        server.stop()
    env.pop("ASKBATCH_BROKER_URL")
    run = askbatch(
        ["run", str(sheet), "--model", "gpt-4o-mini", "-o", str(tmp_path / "cli.csv")],
        env,
        tmp_path / "cli.csv",
    )
    assert run.code == 0, run.stderr
    assert_same_answers(got, run.rows())
    assert API_KEY not in server.text


def test_passwords_in_urls_are_never_shown(api, redis_server, tmp_path):
    env = base_env(tmp_path, api)
    # This Redis has no password and takes any: the URL's must still never be shown.
    url = fresh_db(redis_server.url, 9).replace("redis://", "redis://:s3cret-pw@")
    env["ASKBATCH_BROKER_URL"] = url
    # No worker listens on database 9, so the job's one request is never sent to this URL.
    env["OPENAI_BASE_URL"] = api.base_url + "?api-key=base-pw&api-version=2024"
    server = Server.start(env, tmp_path / "serve.log")
    try:
        with server.client() as c:
            shown = c.get("/api/config").text + c.get("/api/jobs").text
            job_id = _start(c, _sheet(tmp_path, 2), model="gpt-4o-mini")
            shown += c.get(f"/api/jobs/{job_id}").text + c.get("/api/jobs").text
    finally:
        server.stop()
    assert "redis://:***@" in shown and "redis://:***@" in server.text
    assert "api-key=***&api-version=2024" in shown
    assert "s3cret-pw" not in shown + server.text and "base-pw" not in shown + server.text


def test_a_stopped_server_leaves_its_job_to_resume(api, tmp_path):
    env = priced_env(tmp_path, api)
    server = Server.start(env, tmp_path / "serve.log", "--concurrency", "2")
    sheet = _sheet(tmp_path, 30, marker="[[sleep:0.3]]")
    with server.client() as c:
        job_id = _start(c, sheet)
        wait_job(c, job_id, lambda f: f["done"] >= 3)
    server.stop()  # SIGTERM: its threads end with it, the answered rows are on disk
    again = Server.start(env, tmp_path / "serve2.log")
    try:
        with again.client() as c:
            facts = c.get(f"/api/jobs/{job_id}").json()
            assert facts["state"] == "not running" and 3 <= facts["done"] < 30
            assert facts["can_resume"]
            r = c.post(f"/api/jobs/{job_id}/resume")
            assert r.status_code == 200 and "rows to ask" in r.json()["message"], r.text
            assert c.post(f"/api/jobs/{job_id}/resume").status_code == 400  # already running
            facts = wait_job(c, job_id, lambda f: f["state"] == "finished")
            assert facts["by_status"] == {"completed": 30}
    finally:
        again.stop()
    # The server wrote the answers CSV beside the upload when the job ended.
    written = list((tmp_path / "state" / "uploads").glob(f"*/sheet.{job_id}.answers.csv"))
    assert len(written) == 1 and len(csv_rows(written[0].read_text(encoding="utf-8"))) == 30


def test_every_asset_is_served_locally():
    from jobs.web.app import STATIC

    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_a_job_started_with_an_answer_key_shows_its_score(embedded, tmp_path):
    server, _ = embedded
    rows = [["k1", "Two plus two?\nAnswer: 4", "4"], ["k2", "Half of 3?\nAnswer: 1.6", "3/2"]]
    sheet = write_csv(tmp_path / "keyed.csv", ["id", "question", "key"], rows)
    with server.client() as c:
        with sheet.open("rb") as f:
            bad = c.post("/api/estimate", files={"worksheet": (sheet.name, f)}, data={})
            upload = bad.json()["upload"]
        refused = c.post("/api/jobs", data={"upload": upload, "expected": "answer_key"})
        assert refused.status_code == 400 and "no column 'answer_key'" in refused.text
        job_id = _start(c, sheet, expected="key")
        facts = wait_job(c, job_id, lambda f: f["state"] == "finished" and f.get("grade"))
        assert facts["grade"]["line"] == "1 of 2 graded rows correct (50 %)"
        assert [(w["row"], w["key"]) for w in facts["grade"]["wrong"]] == [(2, "3/2")]
        answers = csv_rows(c.get(f"/api/jobs/{job_id}/answers.csv").text)
        assert [r["correct"] for r in answers] == ["yes", "no"]
        report = c.get(f"/api/jobs/{job_id}/report.html").text
        assert (
            "1 of 2 graded rows correct (50 %)" in report and "Right and wrong by model" in report
        )
