"""Soft time limits: a task gets SoftTimeLimitExceeded, can clean up, and the hard limit still applies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aury_tasks import TaskFailed, TaskHandle, TaskManager

from .events import EventLog

SOFT_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "soft_timeout_modules"
#: How long a test waits for a task to end: its limits are 0.3 to 1.5 s; a fixture task would
#: run for 10 s without them.
END_WAIT = 8.0


@pytest.fixture
def soft_producer(producer: TaskManager, import_modules: Callable[[Path], None]) -> TaskManager:
    """The producer, with the soft time limit fixture tasks imported."""
    import_modules(SOFT_MODULES)
    return producer


def _send(tm: TaskManager, task_name: str, tag: str) -> TaskHandle:
    return tm.get_task(task_name).send(tag)


def _error_type(handle: TaskHandle) -> str:
    with pytest.raises(TaskFailed) as failed:
        handle.get_result(timeout=END_WAIT)
    return failed.value.error_type


def test_a_task_that_catches_its_soft_limit_cleans_up_and_succeeds(
    start_worker, soft_producer: TaskManager, events: EventLog
) -> None:
    # Given a worker, sync and async tasks that catch SoftTimeLimitExceeded, one that ends within
    # its soft limit, and one sent with a shorter soft limit than its own
    start_worker(modules=SOFT_MODULES)

    # When they are sent
    sync = _send(soft_producer, "cleans_up_sync", "sync")
    async_ = _send(soft_producer, "cleans_up_async", "async")
    in_time = _send(soft_producer, "finishes_in_time", "in-time")
    told = soft_producer.get_task("cleans_up_when_told").send_with_options(
        args=("told",), soft_time_limit=300
    )

    # Then those over their soft limit clean up and return normally; the other is not disturbed
    assert sync.get_result(timeout=END_WAIT) == "cleaned"
    assert async_.get_result(timeout=END_WAIT) == "cleaned"
    assert told.get_result(timeout=END_WAIT) == "cleaned"
    assert in_time.get_result(timeout=END_WAIT) == "finished"
    assert {event["tag"] for event in events.all("cleanup")} == {"sync", "async", "told"}
    assert soft_producer.task_status(sync.id).value == "success"


def test_a_soft_limit_that_escapes_fails_the_task_and_is_retried(
    start_worker, soft_producer: TaskManager, events: EventLog
) -> None:
    # Given a worker, and sync (one retry) and async (no retry) tasks that do not catch it
    start_worker(modules=SOFT_MODULES)

    # When they are sent
    sync = _send(soft_producer, "lets_it_escape_sync", "sync")
    async_ = _send(soft_producer, "lets_it_escape_async", "async")

    # Then each fails with SoftTimeLimitExceeded, the sync one after its retry: not a permanent error
    assert _error_type(sync) == "SoftTimeLimitExceeded"
    assert _error_type(async_) == "SoftTimeLimitExceeded"
    record = soft_producer.task_record(sync.id)
    assert record.attempt == 2
    assert [error["type"] for error in record.errors] == ["SoftTimeLimitExceeded"] * 2
    assert len(events.all("start", tag="sync")) == 2
    assert len(events.all("start", tag="async")) == 1


def test_the_hard_limit_still_stops_a_task_that_goes_on_after_its_soft_limit(
    start_worker, soft_producer: TaskManager, events: EventLog
) -> None:
    # Given a worker, and tasks that catch the soft limit and then run on past their hard limit
    start_worker(modules=SOFT_MODULES)

    # When they are sent
    sync = _send(soft_producer, "ignores_it_sync", "sync")
    async_ = _send(soft_producer, "ignores_it_async", "async")

    # Then each cleaned up at the soft limit and was stopped by the hard one
    assert _error_type(sync) == "TimeLimitExceeded"
    assert _error_type(async_) == "TimeLimitExceeded"
    assert {event["tag"] for event in events.all("cleanup")} == {"sync", "async"}
    assert [event["tag"] for event in events.all("hard_cancel")] == ["async"]
