"""A Redis restart or a dropped connection: sends wait it out (bounded), workers reconnect by themselves.

Each test has a private server (the embedded one, AOF on) that it stops and starts again on the
same port and data directory.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from aury_tasks import BrokerUnavailable, TaskManager, TaskStatus
from aury_tasks.config.settings import get_settings

from .conftest import Restartable
from .events import wait_until

FIXTURE_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "sample_modules"


@pytest.fixture
def private_producer(private: Restartable, monkeypatch: pytest.MonkeyPatch, import_modules) -> TaskManager:
    """The default TaskManager sending to the private server, with the fixture tasks imported."""
    monkeypatch.setenv("TASK_BROKER_URL", private.url)
    get_settings.cache_clear()
    tm = TaskManager.get_instance()
    import_modules(FIXTURE_MODULES)
    return tm


def test_a_send_during_a_restart_waits_for_redis_and_nothing_is_lost(
    private: Restartable, private_producer: TaskManager, start_worker
) -> None:
    # Given a producer that has sent a task, and a Redis that is stopped and back within a second
    add = private_producer.get_task("add")
    before = add.send(1, 1)
    private.stop()
    threading.Timer(0.8, private.start).start()

    # When a task is sent while it is down
    during = add.send(2, 2)

    # Then the send waited for it instead of failing, and a worker runs both tasks (AOF kept the first)
    start_worker("-q", "fixture", env={"TASK_BROKER_URL": private.url})
    assert before.get_result(timeout=20) == 2
    assert during.get_result(timeout=20) == 4


def test_a_send_to_a_redis_that_stays_down_raises_broker_unavailable(
    private: Restartable, private_producer: TaskManager
) -> None:
    # Given a Redis that is down and stays down
    add = private_producer.get_task("add")
    add.send(0, 0)
    private.stop()

    # When a task is sent, it fails after its bounded retries with one clear error naming the broker
    started = time.monotonic()
    with pytest.raises(
        BrokerUnavailable, match=rf"cannot send .*add: broker redis://127.0.0.1:{private.port}/0 unreachable"
    ):
        add.send(1, 1)
    assert time.monotonic() - started < 30  # bounded: it gave up (the figure is ~2.5 s, not asserted)


def test_a_worker_reconnects_by_itself_after_a_restart(
    private: Restartable, private_producer: TaskManager, start_worker
) -> None:
    # Given a worker on the private Redis that has run a task
    worker = start_worker("-q", "fixture", env={"TASK_BROKER_URL": private.url})
    add = private_producer.get_task("add")
    assert add.send(1, 2).get_result(timeout=20) == 3

    # When Redis restarts under it
    private.stop()
    time.sleep(1.0)
    private.start()

    # Then the same worker process runs what is sent next, without being restarted
    handle = add.send(3, 4)
    assert handle.get_result(timeout=30) == 7
    assert worker.process.poll() is None
    wait_until(lambda: handle.status() is TaskStatus.SUCCESS, timeout=5, what="the record")


@pytest.mark.parametrize(
    ("credentials", "message"),
    [(":wrong-s3cret@", "refused its credentials"), ("", "wants a password"),
     ("nobody:wrong-s3cret@", "refused its credentials")],
    ids=["wrong-password", "no-password", "unknown-user"],
)  # fmt: skip
def test_a_worker_with_wrong_credentials_stops_at_once_with_one_line(
    private: Restartable, start_worker, credentials: str, message: str
) -> None:
    # Given a Redis that wants a password
    admin = redis.Redis.from_url(private.url)
    admin.config_set("requirepass", "right-s3cret")
    admin.close()

    # When a worker starts with wrong credentials
    url = private.url.replace("redis://", f"redis://{credentials}")
    worker = start_worker("-q", "fixture", env={"TASK_BROKER_URL": url}, ready=False)

    # Then it exits 2 with one line naming the setting, the password masked, and never starts its processes
    assert worker.wait(30) == 2
    errors = [line for line in worker.lines if line.startswith("Error:")]
    assert len(errors) == 1 and "invalid setting TASK_BROKER_URL" in errors[0] and message in errors[0]
    assert "s3cret" not in worker.output()
    assert "ready for action" not in worker.output()


def test_a_worker_whose_redis_is_down_at_start_exits_4(private: Restartable, start_worker) -> None:
    private.stop()

    worker = start_worker("-q", "fixture", env={"TASK_BROKER_URL": private.url}, ready=False)

    assert worker.wait(30) == 4
    assert worker.lines[-1].startswith(f"Error: broker {private.url} unreachable")
