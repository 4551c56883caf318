"""Alerts end to end: a real ``aum scheduler`` leads, evaluates, and POSTs to a webhook receiver.

The receiver is an ``http.server`` in a thread of the test, on a free port, recording every body
and header. Each alert must arrive exactly once when it fires and once when it resolves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import spawn_aum

from aury_tasks import TaskManager
from aury_tasks.alerts import AlertRule
from aury_tasks.alerts.deliver import SIGNATURE_HEADER, verify
from aury_tasks.alerts.store import AlertStore
from aury_tasks.core import keys

from .events import wait_until

SECRET = "webhook-secret-of-the-test"
OTHER = "sample_modules.jobs.tasks.on_other_queue"
PERMANENT = "sample_modules.jobs.tasks.permanent"
StartProcess = Callable[..., Any]


class Receiver:
    """A webhook receiver recording ``(body, headers)`` of every POST; answers 204."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((body, dict(self.headers.items())))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, rule: str, state: str) -> list[dict[str, Any]]:
        """The bodies received for ``rule`` in ``state``."""
        bodies = [json.loads(body) for body, _ in self.received]
        return [body for body in bodies if body["rule"] == rule and body["state"] == state]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


def alert_env(receiver: Receiver, rules: list[AlertRule]) -> dict[str, str | None]:
    return {
        "TASK_ALERT_INTERVAL": "0.5",
        "TASK_ALERT_WEBHOOK_URL": receiver.url,
        "TASK_ALERT_SECRET": SECRET,
        "TASK_ALERT_RULES": json.dumps([rule.to_dict() for rule in rules]),
    }


def assert_nothing_more(receiver: Receiver, *, count: int) -> None:
    """No delivery beyond ``count`` arrives during three more evaluations (0.5 s apart)."""
    with pytest.raises(AssertionError, match="timed out"):
        wait_until(lambda: len(receiver.received) > count, timeout=1.5, what="an extra delivery")
    assert len(receiver.received) == count, [body for body, _ in receiver.received]


def test_a_backlog_alert_fires_once_signed_and_resolves_once_when_drained(
    producer: TaskManager, receiver: Receiver, start_scheduler: StartProcess, start_worker: StartProcess
) -> None:
    # Given a scheduler watching the backlog of a queue no worker serves (more than 2 waiting)
    rule = AlertRule(name="other-backlog", kind="backlog", queue="other", threshold=2)
    scheduler = start_scheduler(env=alert_env(receiver, [rule]))
    # When 3 tasks wait there
    for index in range(3):
        producer.get_task(OTHER).send(f"t{index}")
    # Then one firing arrives, signed with the secret
    wait_until(lambda: receiver.alerts(rule.name, "firing"), timeout=15, what="the firing delivery")
    body, headers = receiver.received[0]
    assert verify(body, SECRET, headers[SIGNATURE_HEADER])
    firing = json.loads(body)
    assert (firing["kind"], firing["target"], firing["value"], firing["threshold"]) == (
        "backlog",
        "other",
        3,
        2,
    )
    # When a worker drains the queue
    start_worker("-q", "other")
    # Then one resolution arrives
    wait_until(lambda: receiver.alerts(rule.name, "resolved"), timeout=20, what="the resolved delivery")
    scheduler.wait_for_line(f"alert {rule.name} resolved")
    # And nothing more: three evaluations later there was exactly one of each
    assert_nothing_more(receiver, count=2)
    assert [json.loads(body)["state"] for body, _ in receiver.received] == ["firing", "resolved"], (
        scheduler.output()
    )
    assert f"alert {rule.name} firing" in scheduler.output()


def test_a_failure_burst_fires_a_failure_rate_alert_once_and_it_resolves_when_tasks_succeed_again(
    producer: TaskManager,
    receiver: Receiver,
    redis_client: redis.Redis,
    start_scheduler: StartProcess,
    start_worker: StartProcess,
) -> None:
    # Given a failure-rate rule added in Redis (as `aum alerts add` does): above 50 % of the queue
    rule = AlertRule(name="fixture-failing", kind="failure_rate", queue="fixture", threshold=50, window=60)
    AlertStore(redis_client, keys.DEFAULT).put(rule)
    start_worker("-q", "fixture")
    scheduler = start_scheduler(env=alert_env(receiver, []))
    # When a burst of tasks fails
    handles = [producer.get_task(PERMANENT).send(f"p{index}") for index in range(4)]
    for handle in handles:
        wait_until(lambda h=handle: h.status().is_final, timeout=15, what=f"task {handle.id} to end")
    # Then one firing arrives, saying 100 %
    firing = wait_until(lambda: receiver.alerts(rule.name, "firing"), timeout=10, what="the firing")
    assert (firing[0]["value"], firing[0]["target"]) == (100.0, "fixture")
    # And still one after three more evaluations (the incident stays open, nothing is re-sent)
    assert_nothing_more(receiver, count=1)
    assert len(receiver.alerts(rule.name, "firing")) == 1, scheduler.output()
    assert f"alert {rule.name} firing" in scheduler.output()
    # When tasks of the queue succeed again (5 of 9 in the window: 44 % failed)
    for index in range(5):
        assert producer.get_task("add").send(index, index).get_result(timeout=15) == 2 * index
    # Then one resolution arrives, and nothing more
    wait_until(lambda: receiver.alerts(rule.name, "resolved"), timeout=10, what="the resolved delivery")
    assert_nothing_more(receiver, count=2)
    assert [json.loads(body)["state"] for body, _ in receiver.received] == ["firing", "resolved"]


def test_aum_alerts_add_list_test_and_remove(redis_url: str, tmp_path: Path, receiver: Receiver) -> None:
    # Given a webhook and its secret in the environment
    env = {"TASK_ALERT_WEBHOOK_URL": receiver.url, "TASK_ALERT_SECRET": SECRET}

    def aum(*args: str, extra: dict[str, str | None] | None = None) -> tuple[int, str]:
        process = spawn_aum(redis_url, tmp_path, "alerts", *args, env={**env, **(extra or {})})
        return process.wait(), process.output()

    # When a rule is added and the rules listed
    code, _ = aum("add", "emails-backlog", "--kind", "backlog", "--queue", "emails", "--threshold", "100")
    assert code == 0
    code, listed = aum("list")
    # Then the table shows it, not firing
    assert code == 0
    assert "emails-backlog" in listed and "backlog" in listed and "ok" in listed
    # When a test delivery is sent / Then the receiver answered 2xx, and the body is signed
    code, said = aum("test", "emails-backlog")
    assert code == 0, said
    assert "answered 204" in said
    body, headers = receiver.received[-1]
    assert verify(body, SECRET, headers[SIGNATURE_HEADER])
    assert json.loads(body)["state"] == "test"
    # When the webhook is unreachable / Then exit code 4, the URL's password masked
    code, said = aum("test", extra={"TASK_ALERT_WEBHOOK_URL": "http://user:pw-secret@127.0.0.1:9/x"})
    assert code == 4, said
    assert "unreachable" in said and "pw-secret" not in said
    # When the rule is removed / Then it is gone
    assert aum("remove", "emails-backlog")[0] == 0
    assert aum("remove", "emails-backlog")[0] == 2
