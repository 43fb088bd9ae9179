"""`askbatch serve`'s page in a real headless browser: Debian's Chromium (/usr/bin/chromium,
`apt-get install chromium`; scripts/test installs it) driven by Playwright, which is pointed
at that binary and downloads no browser of its own.

A person uploads a worksheet, sees the estimate, starts the job, watches it reach 100 %, and
downloads the answers CSV, which must equal, cell by cell, what `askbatch run` writes for the
same sheet (but the run's ids and latency); and cancels a running job. A screenshot of each
page goes to `test-output/web/` in the repository (gitignored), kept after the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import API_KEY, ROOT, askbatch, write_csv
from tests.webtools import Server, assert_same_answers, csv_rows, priced_env

CHROMIUM = os.environ.get("ASKBATCH_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "web"

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def served(api, tmp_path):
    env = priced_env(tmp_path, api)
    # Four rows at a time: the cancel test's job is still running when the button is pressed.
    server = Server.start(env, tmp_path / "serve.log", "--concurrency", "4")
    yield server, env
    server.stop()
    assert API_KEY not in server.text


def _sheet(tmp_path: Path, n: int, marker: str = "", name: str = "homework.csv") -> Path:
    rows = [[f"r{i}", f"Explain step {i}, with \"quotes\", commas and 한국어 {marker}", f"x{i}"]
            for i in range(n)]  # fmt: skip
    return write_csv(tmp_path / name, ["id", "question", "class"], rows)


def _upload_and_start(page, server: Server, sheet: Path, shot: str):
    page.goto(server.entry)  # the address serve printed: its token becomes a session cookie
    assert page.url == server.url + "/", "the token leaves the address bar"
    page.set_input_files("#worksheet", str(sheet))
    estimate = page.locator("#estimate-text")
    estimate.wait_for(state="visible", timeout=30_000)
    assert "gpt-5-mini" in estimate.inner_text()
    page.screenshot(path=str(SHOTS / shot), full_page=True)
    page.click("#start")
    page.wait_for_url("**/jobs/*", timeout=30_000)


def test_upload_watch_download(browser, served, tmp_path):
    server, env = served
    sheet = _sheet(tmp_path, 24, marker="[[sleep:0.3]]")
    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
    bad = write_csv(tmp_path / "bad.csv", ["id", "prompt"], [["1", "hi"]])
    page.goto(server.url + "/")
    assert "needs its token" in page.content(), "no page without the token"
    page.goto(server.entry)
    page.set_input_files("#worksheet", str(bad))
    page.locator("#error").filter(has_text="question").wait_for(timeout=30_000)
    assert page.locator("#error").inner_text().startswith("bad.csv: ")
    assert page.locator("#start").is_disabled()

    _upload_and_start(page, server, sheet, "start-form.png")
    seen: set[str] = set()
    shot = SHOTS / "job-running.png"
    shot.unlink(missing_ok=True)
    for _ in range(600):
        percent = page.locator("#percent").inner_text()
        if percent not in ("–", "100 %") and float(percent.split()[0]) >= 40 and not shot.exists():
            # Half-way, with the rate and time left: docs/page.md's picture (docs/serve.png).
            page.locator("main section").first.screenshot(path=str(shot))
        seen.add(percent)
        if percent == "100 %":
            break
        page.wait_for_timeout(100)
    assert page.locator("#percent").inner_text() == "100 %"
    assert len(seen - {"–"}) >= 2  # it moved while we watched, not only 0 and 100
    page.locator("#state").filter(has_text="finished").wait_for(timeout=30_000)
    assert page.locator("#rows").inner_text() == "24 / 24"
    assert page.locator("#cost").inner_text().startswith("$")
    page.frame_locator("#report").locator("svg").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "job-finished.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#download-csv")
    got = tmp_path / "downloaded.csv"
    download.value.save_as(got)
    with page.expect_download() as report:
        page.click("#download-report")
    assert "<svg" in Path(report.value.path()).read_text()

    page.goto(server.url + "/")
    page.locator("#jobs tbody tr").first.wait_for()
    assert "100" in page.locator("#jobs tbody tr").first.inner_text()
    page.screenshot(path=str(SHOTS / "job-list.png"), full_page=True)

    out = tmp_path / "cli.csv"
    run = askbatch(["run", str(sheet), "-o", str(out)], env, out)
    assert run.code == 0, run.stderr
    assert_same_answers(csv_rows(got.read_text(encoding="utf-8")), run.rows())


def test_cancel_a_running_job(browser, served, tmp_path):
    server, _ = served
    sheet = _sheet(tmp_path, 60, marker="[[sleep:0.5]]", name="long.csv")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _upload_and_start(page, server, sheet, "start-long.png")
    page.locator("#state").filter(has_text="running").wait_for(timeout=30_000)
    page.locator("#cancel").click()
    page.locator("#message").filter(has_text="cancel").wait_for(timeout=30_000)
    page.locator("#state").filter(has_text="finished").wait_for(timeout=60_000)
    statuses = page.locator("#by-status").inner_text()
    assert "cancelled" in statuses
    page.screenshot(path=str(SHOTS / "job-cancelled.png"), full_page=True)
    assert not page.locator("#retry").is_disabled()
