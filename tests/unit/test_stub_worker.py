"""A Dramatiq worker on the stub broker runs the tasks, retries failures with backoff, and not more."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from aury_tasks import PermanentError, TaskManager

StartWorker = Callable[[], dramatiq.Worker]


@dataclass
class Enqueued:
    retries: int
    delay: int | None
    options: dict[str, Any]


class RecordEnqueues(Middleware):
    """Remembers every message the broker enqueues with a delay: the retries."""

    def __init__(self) -> None:
        self.retries: list[Enqueued] = []
        self._lock = threading.Lock()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        if delay is not None:
            with self._lock:
                self.retries.append(Enqueued(message.options.get("retries", 0), delay, dict(message.options)))


@pytest.fixture
def broker(worker_tm: TaskManager) -> StubBroker:
    broker = worker_tm.broker
    assert isinstance(broker, StubBroker)
    return broker


@pytest.fixture
def enqueues(broker: StubBroker) -> RecordEnqueues:
    recorder = RecordEnqueues()
    broker.add_middleware(recorder)
    return recorder


def run_until_idle(broker: StubBroker, worker: dramatiq.Worker, queue_name: str) -> None:
    broker.join(queue_name, fail_fast=False, timeout=10_000)
    worker.join()


def test_sync_and_async_tasks_run(
    worker_tm: TaskManager, broker: StubBroker, stub_worker: StartWorker
) -> None:
    # Given a sync and an async task in worker mode
    results: list[tuple[str, Any]] = []

    @worker_tm.conditional_task(queue_name="jobs")
    def add(x: int, y: int) -> int:
        results.append(("add", x + y))
        return x + y

    @worker_tm.conditional_task(queue_name="jobs")
    async def async_add(x: int, y: int) -> int:
        await asyncio.sleep(0.001)
        results.append(("async_add", x + y))
        return x + y

    worker = stub_worker()

    # When both are sent
    add.send(1, 2)
    async_add.send(x=3, y=4)
    run_until_idle(broker, worker, "jobs")

    # Then the worker ran both with their arguments, and nothing failed
    assert sorted(results) == [("add", 3), ("async_add", 7)]
    assert broker.dead_letters == []


def test_a_permanent_error_is_not_retried(
    worker_tm: TaskManager, broker: StubBroker, enqueues: RecordEnqueues, stub_worker: StartWorker
) -> None:
    # Given a task allowed 3 retries that raises PermanentError
    attempts: list[str] = []

    @worker_tm.conditional_task(queue_name="jobs", max_retries=3, retry_delay=0.01)
    def charge(order_id: str) -> None:
        attempts.append(order_id)
        raise PermanentError(f"order {order_id} does not exist")

    worker = stub_worker()

    # When it is sent
    handle = charge.send("o-1")
    run_until_idle(broker, worker, "jobs")

    # Then it ran once, was not retried, and its message is dead-lettered
    assert attempts == ["o-1"]
    assert enqueues.retries == []
    (dead,) = broker.dead_letters
    assert dead.message_id == handle.id
    assert "retries" not in dead.options


def test_a_subclass_of_permanent_error_is_not_retried_either(
    worker_tm: TaskManager, broker: StubBroker, stub_worker: StartWorker
) -> None:
    class InvalidAddress(PermanentError):
        """The email address is invalid."""

    attempts: list[int] = []

    @worker_tm.conditional_task(queue_name="jobs", max_retries=3, retry_delay=0.01)
    def mail() -> None:
        attempts.append(1)
        raise InvalidAddress()

    worker = stub_worker()
    mail.send()
    run_until_idle(broker, worker, "jobs")

    assert attempts == [1]
    assert len(broker.dead_letters) == 1


def test_a_failure_is_retried_with_growing_capped_backoff(
    worker_tm: TaskManager, broker: StubBroker, enqueues: RecordEnqueues, stub_worker: StartWorker
) -> None:
    # Given a task that always fails, with 3 retries from 10 ms, capped at 30 ms
    attempts: list[int] = []

    @worker_tm.conditional_task(queue_name="jobs", max_retries=3, retry_delay=0.01, max_retry_delay=0.03)
    def flaky() -> None:
        attempts.append(1)
        raise RuntimeError("down")

    worker = stub_worker()

    # When it is sent
    handle = flaky.send()
    run_until_idle(broker, worker, "jobs")

    # Then it ran 1 + 3 times, then was dead-lettered
    assert len(attempts) == 4
    (dead,) = broker.dead_letters
    assert dead.message_id == handle.id
    assert dead.options["retries"] == 4
    # and each retry carried the failure, its count, and a delay from the backoff options
    assert [retry.retries for retry in enqueues.retries] == [1, 2, 3]
    assert all("RuntimeError: down" in retry.options["traceback"] for retry in enqueues.retries)
    assert all("requeue_timestamp" in retry.options for retry in enqueues.retries)
    first, second, third = (retry.delay for retry in enqueues.retries)
    assert 10 <= first <= 20  # retry_delay, up to twice that with jitter
    assert 15 <= second <= 30  # doubled, then within 50-100 % of the cap if above it
    assert 15 <= third <= 30
    assert max(first, second, third) <= 30  # never above max_retry_delay


def test_a_task_that_fails_once_succeeds_on_retry(
    worker_tm: TaskManager, broker: StubBroker, enqueues: RecordEnqueues, stub_worker: StartWorker
) -> None:
    # Given a task that fails on its first attempt only
    attempts: list[int] = []

    @worker_tm.conditional_task(queue_name="jobs", max_retries=2, retry_delay=0.01)
    def once() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("blip")
        return "ok"

    worker = stub_worker()

    # When it is sent
    once.send()
    run_until_idle(broker, worker, "jobs")

    # Then it succeeded on the second attempt, after one retry
    assert len(attempts) == 2
    assert [retry.retries for retry in enqueues.retries] == [1]
    assert broker.dead_letters == []


def test_max_retries_zero_fails_at_once(
    worker_tm: TaskManager, broker: StubBroker, enqueues: RecordEnqueues, stub_worker: StartWorker
) -> None:
    attempts: list[int] = []

    @worker_tm.conditional_task(queue_name="jobs", max_retries=0, retry_delay=0.01)
    def fragile() -> None:
        attempts.append(1)
        raise RuntimeError("once only")

    worker = stub_worker()
    fragile.send()
    run_until_idle(broker, worker, "jobs")

    assert attempts == [1]
    assert enqueues.retries == []
    assert len(broker.dead_letters) == 1


@pytest.mark.parametrize(
    ("error", "attempts_expected"),
    [(ConnectionError, 3), (ValueError, 1)],
)
def test_retry_on_retries_only_listed_errors(
    worker_tm: TaskManager,
    broker: StubBroker,
    stub_worker: StartWorker,
    error: type[Exception],
    attempts_expected: int,
) -> None:
    # Given a task retried (twice at most) on connection errors only
    attempts: list[int] = []

    @worker_tm.conditional_task(queue_name="jobs", max_retries=2, retry_delay=0.01, retry_on=ConnectionError)
    def fetch() -> None:
        attempts.append(1)
        raise error("failed")

    worker = stub_worker()

    # When it fails with the given error
    fetch.send()
    run_until_idle(broker, worker, "jobs")

    # Then a listed error used every retry, any other none; both end dead-lettered
    assert len(attempts) == attempts_expected
    assert len(broker.dead_letters) == 1
