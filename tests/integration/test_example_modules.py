"""The example modules in modules/ do what they say, run by a real worker.

Emails go to a real SMTP server (aiosmtpd) started by the test; reports land in a directory.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
import redis
from aiosmtpd.controller import Controller

from aury_tasks import TaskManager

from .events import wait_dead_lettered, wait_until

EXAMPLE_MODULES = Path(__file__).resolve().parents[2] / "modules"


class SmtpSink:
    """An SMTP server that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def example_producer(redis_url: str, monkeypatch: pytest.MonkeyPatch, import_modules) -> TaskManager:
    """The default TaskManager sending to the test Redis, with the example modules imported."""
    monkeypatch.setenv("TASK_BROKER_URL", redis_url)
    import_modules(EXAMPLE_MODULES)
    return TaskManager.get_instance()


def test_welcome_email_reaches_the_smtp_server(
    start_worker, example_producer: TaskManager, smtp_sink: tuple[SmtpSink, int]
) -> None:
    # Given a worker on the example modules, configured to mail through the SMTP sink
    sink, port = smtp_sink
    start_worker("-q", "emails", modules=EXAMPLE_MODULES, env={"EMAILS_SMTP_PORT": str(port)})

    # When the welcome email task is sent (an async task)
    example_producer.get_task("send_welcome_email").send(user_id="42")

    # Then the SMTP server receives the message
    wait_until(lambda: sink.messages, timeout=15, what="the welcome email to reach the SMTP sink")
    (mail,) = sink.messages
    assert mail["To"] == "user42@example.com"
    assert mail["Subject"] == "Welcome aboard"


def test_an_invalid_address_fails_once_and_sends_nothing(
    start_worker, example_producer: TaskManager, smtp_sink: tuple[SmtpSink, int], redis_client: redis.Redis
) -> None:
    # Given a worker mailing through the SMTP sink
    sink, port = smtp_sink
    start_worker("-q", "emails", modules=EXAMPLE_MODULES, env={"EMAILS_SMTP_PORT": str(port)})

    # When a password reset goes to an address that is not one
    handle = example_producer.get_task("send_password_reset").send("not-an-address", "t0k3n")

    # Then it fails for good at once (PermanentError: no retries) and nothing is mailed
    wait_dead_lettered(redis_client, handle, timeout=10)
    assert sink.messages == []


def test_build_report_writes_the_report_file(
    start_worker, example_producer: TaskManager, tmp_path: Path
) -> None:
    # Given a worker on the reports queue writing to a directory of the test's
    reports = tmp_path / "reports-out"
    start_worker("-q", "reports", modules=EXAMPLE_MODULES, env={"REPORTS_DIR": str(reports)})

    # When a report is asked for
    example_producer.get_task("build_report").send("2026-11-22", orders=500)

    # Then its JSON file appears with the figures
    path = reports / "sales-2026-11-22.json"
    wait_until(path.exists, timeout=15, what=f"{path} to be written")
    report = json.loads(path.read_text())
    assert report["orders"] == 500
    assert report["revenue"] > 0
    assert report["median"] <= report["p95"]


def test_build_week_runs_the_daily_reports_then_their_summary(
    start_worker, example_producer: TaskManager, tmp_path: Path
) -> None:
    # Given a worker on the reports queue
    reports = tmp_path / "reports-out"
    start_worker("-q", "reports", modules=EXAMPLE_MODULES, env={"REPORTS_DIR": str(reports)})
    from modules.reports.tasks import build_week  # type: ignore[import-not-found]

    # When a week is asked for (a chord: seven daily reports in parallel, then the summary)
    week = build_week("2026-11-16", orders=200).get_result(timeout=30)

    # Then the summary adds up the seven daily files
    days = [json.loads((reports / f"sales-2026-11-{day}.json").read_text()) for day in range(16, 23)]
    assert week["days"] == [report["day"] for report in days]
    assert week["orders"] == 7 * 200
    assert week["revenue"] == round(sum(report["revenue"] for report in days), 2)
    assert json.loads((reports / "week-2026-11-16.json").read_text()) == week
