"""``aum worker`` refuses to start on a broken setup, and stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from aury_tasks import TaskManager, keys

from .events import EventLog

#: Task modules ``broken`` (fails to import) and ``fine``.
BROKEN_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "broken_modules"


def test_a_task_module_that_fails_to_import_stops_the_worker(start_worker) -> None:
    # Given a modules directory where one of two task modules fails to import
    # When a worker starts on it
    worker = start_worker(modules=BROKEN_MODULES, ready=False)

    # Then it exits with code 3, naming the module and what went wrong, and never gets ready
    assert worker.wait() == 3
    errors = [line for line in worker.lines if "broken_modules.broken.tasks" in line]
    assert len(errors) == 1, worker.output()
    assert "aury_tasks_fixture_missing_dependency" in errors[0]
    assert "ready for action" not in worker.output()


def test_an_invalid_setting_stops_the_worker_with_one_line(start_worker) -> None:
    # Given TASK_TIMEOUT that is not a number
    # When a worker starts
    worker = start_worker(env={"TASK_TIMEOUT": "abc"}, ready=False)

    # Then it exits with code 2 and one line naming the variable and the bad value
    assert worker.wait() == 2
    assert len(worker.lines) == 1, worker.output()
    assert "TASK_TIMEOUT" in worker.lines[0]
    assert "'abc'" in worker.lines[0]


@pytest.mark.parametrize("to_group", [False, True], ids=["to-aum-worker", "to-process-group"])
def test_sigterm_lets_the_running_task_finish_then_exits_0(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis, to_group: bool
) -> None:
    # Given a worker running a task that takes 1.5 s
    worker = start_worker()
    producer.get_task("slow_once").send("graceful", 1.5)
    events.wait_for(1, "slow_once_start", tag="graceful")

    # When SIGTERM reaches aum worker alone (it forwards it), or its whole process group
    # (as from `timeout`, `kill -- -PGID` or systemd)
    if to_group:
        worker.signal_group(signal.SIGTERM)
    else:
        worker.process.send_signal(signal.SIGTERM)

    # Then it exits with code 0 once the task has finished and been acknowledged
    assert worker.wait() == 0, worker.output()
    assert len(events.all("slow_once_end", tag="graceful")) == 1
    assert redis_client.keys(f"{keys.BROKER_NAMESPACE}:__acks__.*") == []
