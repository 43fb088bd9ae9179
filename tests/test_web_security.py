"""`askbatch serve` tried as an attacker would (issue 23): each probe against the real command,
a uvicorn server of the runtime environment, over HTTP, with the double, a real redis-server
and real workers. A profile from the page is data; the page needs its token; an upload is
bounded and leaves nothing behind when refused; nothing shows a credential; the state
directory is its owner's."""

from __future__ import annotations

import concurrent.futures
import stat
import time
import uuid
from pathlib import Path

import httpx2
import pytest

from tests.conftest import API_KEY, askbatch, base_env, write_csv
from tests.webtools import Server, priced_env, wait_job

SHEET = b"id,question\n1,what is 2 + 2?\n"
TOOL_PROFILE = """
[[tools]]
function = "{function}"
name = "{name}"
parameters = {{ type = "object", properties = {{ key = {{ type = "string" }} }} }}
"""


def _multipart(*parts: tuple[str, bytes | None, bytes]) -> tuple[bytes, str]:
    """A multipart body written by hand, so that a file name goes exactly as given (a NUL,
    300 characters): (field, file name or None for a plain field, content) per part."""
    boundary = uuid.uuid4().hex
    body = b""
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n" % (
            boundary.encode(),
            disposition,
            content,
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _post(client: httpx2.Client, path: str, *parts) -> httpx2.Response:
    body, kind = _multipart(*parts)
    return client.post(path, content=body, headers={"content-type": kind})


def _kept(tmp_path: Path) -> list[str]:
    """What the server keeps of uploads: one folder each."""
    uploads = tmp_path / "state" / "uploads"
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def _refused(r: httpx2.Response, *words: str) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    message = r.json()["error"]
    assert isinstance(message, str) and "\n" not in message
    for word in words:
        assert word in message, message
    return message


@pytest.fixture
def served(api, tmp_path):
    env = priced_env(tmp_path, api)  # no ASKBATCH_UI_TOKEN: the server makes one
    env["ASKBATCH_TEST_IMPORT_MARK"] = str(tmp_path / "imported")
    env["ASKBATCH_UI_MAX_ROWS"] = "1000"
    env["ASKBATCH_UI_MAX_UPLOAD_MB"] = "2"
    server = Server.start(env, tmp_path / "serve.log")
    yield server, env
    server.stop()
    assert API_KEY not in server.text and "Traceback" not in server.text


def test_the_page_needs_its_token_and_a_session_is_not_the_token(served, tmp_path):
    server, _ = served
    port = server.url.rsplit(":", 1)[1]
    assert f"http://127.0.0.1:{port}/?token={server.token}" in server.text  # as Jupyter does
    with server.client(token=False) as c:
        for path in ("/", "/api/jobs", "/api/config", "/static/index.js"):
            assert c.get(path).status_code == 401, path
        assert c.get("/?token=" + "x" * len(server.token)).status_code == 401
        entered = c.get(f"/jobs/abc?token={server.token}&x=1")
        assert entered.status_code == 303 and entered.headers["location"] == "/jobs/abc?x=1"
        cookie = entered.headers["set-cookie"]
        name, value = cookie.split(";")[0].split("=", 1)
        assert name == f"askbatch_session_{port}" and len(value) >= 32
        assert server.token not in cookie and value != server.token
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert c.get("/api/jobs").status_code == 200  # the session cookie
    with server.client(token=False) as c:
        as_token = c.get("/api/jobs", headers={"cookie": f"{name}={server.token}"})
        assert as_token.status_code == 401, "the token is no session"
        # Behind a TLS proxy on this machine (uvicorn trusts 127.0.0.1's X-Forwarded-Proto).
        tls = c.get(f"/?token={server.token}", headers={"x-forwarded-proto": "https"})
        assert tls.status_code == 303 and "; Secure" in tls.headers["set-cookie"]


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x", "///evil.example/x"])
def test_no_redirect_leaves_the_page(served, path):
    server, _ = served
    with server.client(token=False) as c:
        r = c.get(f"{server.url}{path}?token={server.token}")
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert httpx2.URL(server.url).join(location).host == "127.0.0.1"


def test_a_short_token_is_refused_at_start(api, tmp_path):
    env = {**base_env(tmp_path, api), "ASKBATCH_UI_TOKEN": "x"}
    refused = askbatch(["serve", "--port", "0"], env, tmp_path / "none")
    assert refused.code == 2 and "at least 16" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("function", "name"),
    [
        ("os:getenv", "getenv"),
        ("subprocess:getoutput", "run"),
        ("tests.import_probe:anything", "x"),
    ],
)
def test_an_uploaded_profile_names_no_tool_off_the_allowlist(served, tmp_path, function, name):
    server, _ = served
    profile = TOOL_PROFILE.format(function=function, name=name).encode()
    sheet = b'id,question\n1,"[[call:%s:{""key"": ""OPENAI_API_KEY""}]]"\n' % name.encode()
    with server.client() as c:
        for path in ("/api/estimate", "/api/jobs"):
            r = _post(c, path, ("worksheet", b"s.csv", sheet), ("profile", b"p.toml", profile))
            _refused(r, "p.toml", repr(name), function, "ASKBATCH_UI_TOOLS")
            assert API_KEY not in r.text
        assert c.get("/api/jobs").json()["jobs"] == []
    assert not (tmp_path / "imported").exists(), "nothing of the upload was imported"
    assert _kept(tmp_path) == []


def test_an_allowed_tool_is_used(served, tmp_path):
    server, _ = served
    profile = TOOL_PROFILE.format(function="worker.builtin_tools:evaluate", name="evaluate")
    sheet = b'id,question\n1,"six times seven [[call:evaluate:{""expression"": ""6*7""}]]"\n'
    with server.client() as c:
        est = _post(
            c,
            "/api/estimate",
            ("worksheet", b"s.csv", sheet),
            ("profile", b"p.toml", profile.encode()),
        )
        assert est.status_code == 200, est.text
        job = c.post("/api/jobs", data={"upload": est.json()["upload"]})
        assert job.status_code == 201, job.text
        wait_job(c, job.json()["job"], lambda f: f["state"] == "finished")
        answers = c.get(f"/api/jobs/{job.json()['job']}/answers.csv").text
    assert "[tools: 42]" in answers and "evaluate x1" in answers


def test_a_worker_runs_no_tool_the_page_may_not(api, redis_server, workers, tmp_path):
    # The server allows `shout`; the workers (ASKBATCH_UI_TOOLS at its default) do not.
    env = priced_env(tmp_path, api)
    env["ASKBATCH_BROKER_URL"] = redis_server.url
    env["ASKBATCH_UI_TOOLS"] = "worker.builtin_tools:evaluate, tests.tools_for_tests:shout"
    server = Server.start(env, tmp_path / "serve.log")
    profile = TOOL_PROFILE.format(function="tests.tools_for_tests:shout", name="shout").encode()
    sheet = b'id,question\n1,"[[call:shout:{""text"": ""hi""}]]"\n2,plain\n'
    try:
        with server.client() as c:
            est = _post(
                c, "/api/estimate", ("worksheet", b"s.csv", sheet), ("profile", b"p.toml", profile)
            )
            assert est.status_code == 200, est.text
            job_id = c.post("/api/jobs", data={"upload": est.json()["upload"]}).json()["job"]
            facts = wait_job(c, job_id, lambda f: f["state"] == "finished")
            answers = c.get(f"/api/jobs/{job_id}/answers.csv").text
    finally:
        server.stop()
    assert facts["by_status"] == {"failed": 2}
    assert "'shout' (tests.tools_for_tests:shout) is not allowed" in facts["stop"]
    assert "ASKBATCH_UI_TOOLS" in facts["failures"][0]["error"]
    assert "HI" not in answers and "shout x" not in answers


def test_an_uploaded_profile_opens_no_file(served, tmp_path):
    server, _ = served
    secret = tmp_path / "secret.json"
    secret.write_text('"sk-LEAKED-FROM-FILE"')
    with server.client() as c:
        for named in (str(secret), "/etc/hostname", "../../secret.json"):
            profile = f'[response_format]\nname = "a"\nschema_file = "{named}"\n'.encode()
            r = _post(
                c, "/api/estimate", ("worksheet", b"s.csv", SHEET), ("profile", b"p.toml", profile)
            )
            message = _refused(r, "schema_file", "inline")
            assert "LEAKED" not in message and named not in message
        inline = b'[response_format]\nschema = { type = "object", properties = {} }\n'
        ok = _post(
            c, "/api/estimate", ("worksheet", b"s.csv", SHEET), ("profile", b"p.toml", inline)
        )
        assert ok.status_code == 200, ok.text
    assert len(_kept(tmp_path)) == 1  # the good one


HOSTILE = {
    "a 300-character name": [("worksheet", b"a" * 296 + b".csv", SHEET)],
    "a NUL in the name": [("worksheet", b"a\x00b.csv", SHEET)],
    "a worksheet named x.toml": [("worksheet", b"x.toml", SHEET)],
    "a tool named :x": [
        ("worksheet", b"s.csv", SHEET),
        ("profile", b"p.toml", b'[[tools]]\nfunction = ":x"\n'),
    ],
    "a profile that is not TOML": [("worksheet", b"s.csv", SHEET), ("profile", b"p.toml", b"[[[")],
    "a profile too large": [
        ("worksheet", b"s.csv", SHEET),
        ("profile", b"p.toml", b"# " + b"x" * 1_100_000 + b"\n"),
    ],
    "no question column": [("worksheet", b"s.csv", b"id,prompt\n1,hi\n")],
    "too many rows": [("worksheet", b"s.csv", b"question\n" + b"q\n" * 1001)],
    "larger than the upload limit": [("worksheet", b"s.csv", b"question\n" + b"q" * 2_100_000)],
    "a line longer than a row can be": [("worksheet", b"s.csv", b"question\n" + b"q" * 500_000)],
    "a field too large": [("worksheet", b"s.csv", SHEET), ("model", None, b"m" * 300_000)],
    "too many files": [("worksheet", b"s.csv", SHEET)] * 3,
}
WORDS = {
    "a 300-character name": "longer than 255 bytes",
    "a NUL in the name": "control characters",
    "a worksheet named x.toml": "not a worksheet",
    "a tool named :x": "module:callable",
    "too many rows": "ASKBATCH_UI_MAX_ROWS",
    "larger than the upload limit": "ASKBATCH_UI_MAX_UPLOAD_MB",
    "a line longer than a row can be": "longer than 400,000 characters",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_upload_gets_one_message_and_leaves_nothing(served, tmp_path, case):
    server, _ = served
    with server.client() as c:
        for path in ("/api/estimate", "/api/jobs"):
            _refused(_post(c, path, *HOSTILE[case]), *[WORDS[case]] if case in WORDS else [])
        assert c.get("/api/jobs").json()["jobs"] == []
    assert _kept(tmp_path) == [], "no orphan folder"


def test_an_estimate_gets_so_much_cpu(api, tmp_path):
    env = {**priced_env(tmp_path, api), "ASKBATCH_UI_ESTIMATE_CPU": "0.1"}
    server = Server.start(env, tmp_path / "serve.log")
    sheet = write_csv(tmp_path / "big.csv", ["question"], [[f"q {i}"] for i in range(100_000)])
    try:
        with server.client() as c, sheet.open("rb") as f:
            r = c.post("/api/estimate", files={"worksheet": ("big.csv", f)})
    finally:
        server.stop()
    _refused(r, "more than 0.1 s of CPU", "ASKBATCH_UI_ESTIMATE_CPU")
    assert _kept(tmp_path) == []


def test_uploads_no_job_uses_go(api, tmp_path):
    env = {**priced_env(tmp_path, api), "ASKBATCH_UI_UPLOAD_DAYS": str(3 / 86400)}  # 3 s
    server = Server.start(env, tmp_path / "serve.log")
    sheet = ("worksheet", b"s.csv", SHEET)
    try:
        with server.client() as c:
            used = _post(c, "/api/estimate", sheet).json()["upload"]
            job = c.post("/api/jobs", data={"upload": used})
            assert job.status_code == 201, job.text
            unused = _post(c, "/api/estimate", sheet).json()["upload"]
            assert set(_kept(tmp_path)) == {unused, used}
            wait_job(c, job.json()["job"], lambda f: f["state"] == "finished")
            time.sleep(3.5)
            newer = _post(c, "/api/estimate", sheet).json()["upload"]
            assert set(_kept(tmp_path)) == {used, newer}, "the old unused one is gone"
            again = c.post("/api/jobs", data={"upload": unused})
            _refused(again, "that upload is gone")
    finally:
        server.stop()


def test_uploads_no_job_uses_take_so_much_disk(api, tmp_path):
    env = {**priced_env(tmp_path, api), "ASKBATCH_UI_MAX_UPLOAD_MB": "1"}
    env["ASKBATCH_UI_UPLOADS_MB"] = "1"
    server = Server.start(env, tmp_path / "serve.log")
    sheet = ("worksheet", b"s.csv", b"question\n" + b"a long question\n" * 25_000)  # 0.4 MB
    try:
        with server.client() as c:
            ids = [_post(c, "/api/estimate", sheet).json()["upload"] for _ in range(4)]
    finally:
        server.stop()
    assert set(_kept(tmp_path)) == set(ids[-2:]), "the oldest went first"


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_uploads_are_not_held_in_memory(api, tmp_path):
    # Three parallel uploads of 40 MB: their intake fails (no question column) after reading
    # every byte; the server's peak memory grows by less than half of one of them.
    env = {**priced_env(tmp_path, api), "ASKBATCH_UI_MAX_UPLOAD_MB": "45"}
    server = Server.start(env, tmp_path / "serve.log")
    body = b"prompt\n" + b"a question that is not one, 40 bytes\n" * 1_000_000
    before = _peak_kb(server.proc.pid)

    def send(_: int) -> int:
        with server.client() as c:
            return _post(c, "/api/estimate", ("worksheet", b"s.csv", body)).status_code

    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            codes = list(pool.map(send, range(3)))
        grown_mb = (_peak_kb(server.proc.pid) - before) / 1024
    finally:
        server.stop()
    assert codes == [400] * 3, codes
    assert grown_mb < len(body) / 1e6 / 2, f"{grown_mb:.1f} MB"
    assert _kept(tmp_path) == []


def test_a_base_url_with_userinfo_is_refused(api, tmp_path):
    env = base_env(tmp_path, api)
    env["OPENAI_BASE_URL"] = api.base_url.replace("http://", "http://sk-TOKEN@") + "?api-key=S3"
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    for args in (["serve", "--port", "0"], ["run", str(sheet)]):
        refused = askbatch(args, env, tmp_path / "x.csv")
        assert refused.code == 2, refused.stderr
        assert "user name or password" in refused.stderr and "http://***@" in refused.stderr
        assert "sk-TOKEN" not in refused.stderr and "S3" not in refused.stderr


def test_the_state_directory_is_its_owners(served, tmp_path):
    server, _ = served
    with server.client() as c:
        est = _post(c, "/api/estimate", ("worksheet", b"s.csv", SHEET))
        job_id = c.post("/api/jobs", data={"upload": est.json()["upload"]}).json()["job"]
        wait_job(c, job_id, lambda f: f["state"] == "finished")
    state = tmp_path / "state"
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [state, *state.rglob("*")]}
    assert any(p.name.endswith(".answers.csv") for p in modes)
    assert any(p.suffix == ".sqlite" for p in modes)
    for path, mode in modes.items():
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
