"""The web dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

A real ``aum serve`` and a real ``aum worker`` run on the test Redis; the test logs in with the
token and clicks through every page, asserting on what the page shows, and saves a screenshot
of each: under ``docs/screenshots/`` with ``AUM_SCREENSHOTS=1`` (how the committed ones are
made), in the test's temporary directory otherwise. No request may leave localhost (every asset ships in the
package). Chromium is Debian's ``/usr/bin/chromium``, never a browser Playwright downloads;
when it is absent the test installs it with apt-get if it can (root, network), or skips.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import FIXTURE_MODULES, ROOT, WorkerProcess
from fastapi.testclient import TestClient

from .conftest import READ_TOKEN, TOKEN

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
#: Chromium's flags: no sandbox (containers, root), no GPU, and no call home of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Seconds an apt-get step may take before the test gives up and skips.
APT_TIMEOUT = 150
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def test_the_page_and_its_files_are_served_with_strict_headers(app_client: TestClient) -> None:
    # When the page, a script, the stylesheet and a missing file are fetched (no token)
    page = app_client.get("/")
    script = app_client.get("/static/app.js")
    module = app_client.get("/static/js/api.js")
    style = app_client.get("/static/app.css")
    missing = app_client.get("/static/nope.js")

    # Then each is served with the security headers; the page loads nothing from elsewhere
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    for answer in (page, script, module, style):
        assert answer.status_code == 200
        assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404
    assert "/static" not in app_client.get("/api/openapi.json").json()["paths"]
    assert "http" not in page.text.replace("http-equiv", "")


def test_the_dashboard_works_mounted_under_a_prefix(api_env: None, producer: Any) -> None:
    # Given the app mounted at /tasks in another app
    from fastapi import FastAPI

    from aury_tasks.api import create_app

    outer = FastAPI()
    outer.mount("/tasks", create_app(producer))
    with TestClient(outer) as client:
        # When the page and its files are fetched under the prefix
        page = client.get("/tasks/")
        script = client.get("/tasks/static/app.js")
        login = client.post("/tasks/api/v1/session", json={"token": TOKEN})

    # Then they are there, and the session cookie is scoped to the prefix
    assert page.status_code == 200 and script.status_code == 200
    assert login.status_code == 200 and "Path=/tasks/" in login.headers["set-cookie"]


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, installed with apt-get when absent and possible; otherwise a skip."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason:
            pytest.skip(reason)
    return CHROMIUM


def _install_chromium() -> str:
    """Install Debian's chromium; the reason it could not be, or ``""``."""
    if shutil.which("apt-get") is None:
        return f"no Chromium at {CHROMIUM} and no apt-get to install it"
    if os.geteuid() != 0:
        return f"no Chromium at {CHROMIUM}, and not root to run `apt-get install chromium`"
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=5).close()
    except OSError as error:
        return f"no Chromium at {CHROMIUM}, and no network to install it ({error})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for steps in (
        [["apt-get", "install", "-y", "-q", "chromium"]],
        [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]],
    ):
        try:
            if all(
                subprocess.run(step, capture_output=True, timeout=APT_TIMEOUT, env=env).returncode == 0
                for step in steps
            ):
                break
        except subprocess.TimeoutExpired:
            return f"no Chromium at {CHROMIUM}: `apt-get install chromium` took over {APT_TIMEOUT} s"
    return "" if CHROMIUM.exists() else f"no Chromium at {CHROMIUM}: `apt-get install chromium` failed"


@pytest.fixture
def served(
    start_aum: Callable[..., WorkerProcess], start_worker: Callable[..., WorkerProcess]
) -> Iterator[str]:
    """The base URL of a real ``aum serve`` with both tokens; a real worker runs the tasks."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_aum("serve", "--port", str(port), "--modules", str(FIXTURE_MODULES),
                       env={"TASK_API_TOKEN": TOKEN, "TASK_API_READ_TOKEN": READ_TOKEN})  # fmt: skip
    start_worker("-q", "fixture")
    server.wait_for_line("Uvicorn running")
    yield f"http://127.0.0.1:{port}/"


class Api:
    """The API of the served app, with the full token (to set the scene the pages show)."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def send(self, task: str, *args: Any, **body: Any) -> str:
        answer = self.client.post("api/v1/tasks", json={"task": task, "args": list(args), **body})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def wait_ended(self, *task_ids: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for task_id in task_ids:
            while not self.client.get(f"api/v1/tasks/{task_id}/result").json()["ready"]:
                assert time.monotonic() < deadline, f"task {task_id} did not end"
                time.sleep(0.05)

    def wait_failed(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.client.get("api/v1/tasks", params={"status": "failure"}).json()["total"] != count:
            assert time.monotonic() < deadline, f"never {count} failed tasks"
            time.sleep(0.05)


def test_every_page_works_in_a_real_browser(chromium: Path, served: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    screenshots = DOCS_SCREENSHOTS if os.environ.get("AUM_SCREENSHOTS") == "1" else tmp_path / "screenshots"

    # Given tasks that succeeded, failed (dead) and reported progress, a delayed one, a workflow
    api = Api(served)
    added = api.send("add", 2, 3)
    dead = api.send("permanent", "d1")
    api.send("permanent", "d2")
    progress = api.send("with_progress", 4, 0.25)
    delayed = api.send("runs", "later", delay=600)
    header = [{"task": "add", "args": [10]}, {"task": "add", "args": [20]}]
    chain = {"chain": [{"task": "add", "args": [1, 2]}, {"chord": header, "callback": {"task": "echo"}}]}
    sent = api.client.post("api/v1/workflows", json={"workflow": chain})
    assert sent.status_code == 201, sent.text
    api.wait_ended(added, dead, progress)
    screenshots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15000)
        hosts: list[str] = []
        problems: list[str] = []
        page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname or request.url))
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())

        # When the dashboard is opened: a login form; a wrong token is refused, the right one logs in
        page.goto(served)
        page.fill("#token", "not-the-token")
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("Wrong token")
        page.fill("#token", TOKEN)
        page.click("#login-form button[type=submit]")

        # Then the overview shows the queue with its dead tasks, the worker and the charts
        expect(page.locator("#queues")).to_contain_text("fixture")
        expect(page.locator("#workers")).to_contain_text("fixture")
        expect(page.locator("#workers tbody tr td.empty")).to_have_count(0)
        expect(page.locator("#totals")).to_contain_text("dead")
        expect(page.locator("#chart-hour .chart-summary")).to_contain_text("failed")
        expect(page.locator("#chart-hour svg rect.bar-ok").first).to_be_attached()
        expect(page.locator("#chart-day svg")).to_have_count(2)
        page.screenshot(path=screenshots / "overview.png", full_page=True)

        # When the tasks list is opened, then filtered to the failed tasks
        page.click("#nav a[data-page=tasks]")
        expect(page.locator("#tasks")).to_contain_text("with_progress")
        expect(page.locator("#tasks")).to_contain_text("permanent")
        page.screenshot(path=screenshots / "tasks.png", full_page=True)
        page.select_option("#filter-status", "failure")
        expect(page.locator("#task-count")).to_contain_text("2 tasks")
        expect(page.locator("#tasks tbody .badge")).to_have_text(["failure", "failure"])

        # Then a task page shows its result; the progress task its full bar and history
        page.goto(f"{served}#/tasks/{added}")
        expect(page.locator("#task-result")).to_have_text("5")
        page.goto(f"{served}#/tasks/{progress}")
        expect(page.locator("#progress-text")).to_contain_text("100% — step 4 of 4")
        expect(page.locator("#task-history")).to_contain_text("started (attempt 1)")
        expect(page.locator("#task-history")).to_contain_text("ended: success")
        expect(page.locator("#task-result")).to_have_text('"done"')
        page.screenshot(path=screenshots / "task.png", full_page=True)

        # And a live task's bar moves as it reports (the events stream)
        running = api.send("with_progress", 5, 0.4)
        page.goto(f"{served}#/tasks/{running}")
        expect(page.locator("#task-live")).to_contain_text("status started")
        expect(page.locator("#task-live")).to_contain_text("status success")
        expect(page.locator("#progress-text")).to_contain_text("100% — step 5 of 5")
        expect(page.locator("#task-progress")).to_have_attribute("data-reports", re.compile(r"^[2-9]$"))

        # When the dead task's page is opened: its traceback; Retry sends it again as a new task
        page.goto(f"{served}#/tasks/{dead}")
        expect(page.locator("#task-traceback")).to_contain_text("PermanentError")
        expect(page.locator("#task-error")).to_contain_text("cannot ever work d1")
        expect(page.locator("#cancel-task")).to_be_disabled()
        page.click("#retry-task")
        expect(page.locator("#task-details")).to_contain_text(f"Retry of{dead}")
        expect(page.locator("h1 .badge")).to_have_text("failure")

        # When the delayed task is cancelled with its button
        page.goto(f"{served}#/tasks/{delayed}")
        expect(page.locator("h1 .badge")).to_have_text("scheduled")
        page.click("#cancel-task")
        expect(page.locator("h1 .badge")).to_have_text("cancelled")
        expect(page.locator("#retry-task")).to_be_enabled()

        # Then the workflow page shows its tree (a chain of a task and a chord), each step a success
        workflow_id = sent.json()["id"]
        page.click("#nav a[data-page=workflows]")
        expect(page.locator("#recent-workflows")).to_contain_text(workflow_id)
        page.click(f"#recent-workflows a[href='#/workflows/{workflow_id}']")
        expect(page.locator("#workflow-tree .node-task .badge")).to_have_text(["success"] * 4)
        expect(page.locator("#workflow-tree .node-chord .node-group .node-task")).to_have_count(2)
        expect(page.locator("#workflow-tree")).to_contain_text("echo")
        page.screenshot(path=screenshots / "workflow.png", full_page=True)

        # When a job is added on the schedules page, its cron checked as it is typed
        page.click("#nav a[data-page=schedules]")
        expect(page.locator("#jobs")).to_contain_text("No scheduled job")
        page.fill("#job-name", "every-five-minutes")
        page.fill("#job-task", "add")
        page.fill("#job-cron", "61 * * * *")
        expect(page.locator("#cron-error")).to_contain_text("Invalid")
        page.fill("#job-cron", "*/5 * * * *")
        expect(page.locator("#next-fires li")).to_have_count(5)
        page.fill("#job-args", "[1, 2]")
        page.click("#add-job button[type=submit]")
        row = page.locator("#jobs tbody tr", has_text="every-five-minutes")
        expect(row).to_contain_text("cron */5 * * * *")
        expect(row).to_contain_text("active")

        # Then it pauses, resumes and runs now
        row.locator("button.pause").click()
        expect(row).to_contain_text("paused")
        row.locator("button.resume").click()
        expect(row).to_contain_text("active")
        row.locator("button.run").click()
        expect(row.locator("td").nth(5)).not_to_contain_text("never")
        expect(row.locator("td").nth(5).locator(".badge")).to_have_text(re.compile("pending|started|success"))
        page.fill("#job-cron", "0 2 * * 1-5")
        expect(page.locator("#next-fires li")).to_have_count(5)
        page.screenshot(path=screenshots / "schedules.png", full_page=True)

        # When the dead letters page is opened: one is requeued, the rest purged
        page.click("#nav a[data-page=dead-letters]")
        letters = page.locator("#dead-letters tbody tr")
        expect(letters).to_have_count(2)  # d2, and d1's retry, dead again (the retry took d1 out)
        expect(page.locator("#dead-letters")).to_contain_text("cannot ever work d2")
        page.screenshot(path=screenshots / "dead-letters.png", full_page=True)
        letters.filter(has_text="cannot ever work d2").locator("input[type=checkbox]").check()
        page.click("#requeue-selected")
        expect(page.locator("#notice")).to_contain_text("Requeued 1 dead letter")
        api.wait_failed(4)  # d2's requeued task ended, dead again, in d2's place
        page.reload()
        expect(page.locator("#dlq-count")).to_have_text("2 dead letters in fixture")
        page.click("#purge")
        expect(page.locator("#dead-letters")).to_contain_text("No dead letter")

        # And the log-out button ends the session
        page.click("#logout")
        expect(page.locator("#login-form")).to_be_visible()

        # When the read-only token logs in: arguments are hidden, buttons disabled
        page.fill("#token", READ_TOKEN)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#who")).to_have_text("read only")
        page.goto(f"{served}#/tasks/{added}")
        expect(page.locator("#task-outcome")).to_contain_text("hidden from the read-only token")
        expect(page.locator("#retry-task")).to_be_disabled()
        page.click("#nav a[data-page=schedules]")
        expect(page.locator("#jobs")).to_contain_text("every-five-minutes")
        expect(page.locator("#jobs button.run")).to_be_disabled()
        expect(page.locator("#add-job")).to_have_count(0)
        browser.close()

    # Then no request left localhost, and the page logged no error (a CSP violation would be one)
    assert set(hosts) <= LOCAL_HOSTS, sorted(set(hosts) - LOCAL_HOSTS)
    assert [p for p in problems if "401" not in p] == []
