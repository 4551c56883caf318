"""Every task is followed in the ledger, from enqueue to result, with a real worker."""

from __future__ import annotations

import asyncio
import time

import pytest
from brokers import on_both_brokers

from aury_tasks import TaskFailed, TaskManager, TaskRecordNotFound, TaskStatus

from .events import EventLog, wait_until


@on_both_brokers
def test_a_task_is_pending_then_succeeds_with_its_result(start_worker, producer: TaskManager, queue) -> None:
    # Given a task sent with metadata while no worker runs
    handle = producer.get_task("echo").send_with_options(args=[{"a": [1, 2]}], metadata={"user_id": "42"})

    # Then its record exists at once, pending, with what was sent
    assert handle.status() is TaskStatus.PENDING
    record = handle.record()
    assert (record.task_name, record.queue_name) == ("sample_modules.jobs.tasks.echo", queue("fixture"))
    assert record.metadata == {"user_id": "42"}
    assert record.args == [{"a": [1, 2]}]

    # When a worker runs it
    start_worker()

    # Then the result comes back and the record is complete
    assert handle.get_result(timeout=20) == {"a": [1, 2]}
    record = handle.record()
    assert record.status is TaskStatus.SUCCESS
    assert record.worker and record.duration is not None and record.duration >= 0
    assert record.enqueued_at <= record.started_at <= record.finished_at


@on_both_brokers
def test_get_result_raises_the_remote_error(start_worker, producer: TaskManager) -> None:
    start_worker()
    handle = producer.get_task("permanent").send("x")

    with pytest.raises(TaskFailed) as caught:
        handle.get_result(timeout=20)

    assert caught.value.error_type == "PermanentError"
    assert "cannot ever work x" in caught.value.error_message
    assert handle.status() is TaskStatus.FAILURE
    # with the traceback of this failure (Dramatiq keeps none for an error it does not retry)
    traceback = handle.record().traceback
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.rstrip().endswith("PermanentError: cannot ever work x")


def test_get_result_times_out(producer: TaskManager) -> None:
    handle = producer.get_task("echo").send(1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.get_result(timeout=0.5)
    assert time.monotonic() - started < 5


def test_async_result_and_status(start_worker, producer: TaskManager) -> None:
    start_worker()
    handle = producer.get_task("async_add").send(2, 40)

    async def follow() -> tuple[object, TaskStatus]:
        result = await handle.result_async(timeout=20)
        return result, await handle.status_async()

    assert asyncio.run(follow()) == (42, TaskStatus.SUCCESS)


@on_both_brokers
def test_retries_are_recorded_with_every_error(start_worker, producer: TaskManager) -> None:
    start_worker()
    handle = producer.get_task("always_fails").send("r")

    with pytest.raises(TaskFailed):
        handle.get_result(timeout=30)

    record = handle.record()
    assert record.status is TaskStatus.FAILURE
    assert record.attempt == 3
    assert [error["attempt"] for error in record.errors] == [1, 2, 3]
    assert all(error["type"] == "RuntimeError" for error in record.errors)


@on_both_brokers
def test_progress_subscription_gets_every_update_in_order(start_worker, producer: TaskManager) -> None:
    start_worker()
    for name in ("with_progress", "async_progress"):
        handle = producer.get_task(name).send(5, 0.05)
        subscription = producer.subscribe_progress(handle.id, timeout=20)
        updates = [(p.step, p.percent, p.message) for p in subscription]
        assert updates == [(i, 20.0 * i, f"step {i}") for i in range(1, 6)], name
        assert subscription.status is TaskStatus.SUCCESS
        assert handle.progress().step == 5


def test_progress_on_the_event_loop_matches_the_sync_reads(start_worker, producer: TaskManager) -> None:
    # Given a worker and a task that reports its progress
    start_worker()
    handle = producer.get_task("async_progress").send(5, 0.05)

    # When its progress is followed with async for, then read again on the loop
    async def follow() -> tuple[list[int | None], object, object]:
        subscription = producer.subscribe_progress(handle.id, timeout=20)
        steps = [progress.step async for progress in subscription]
        return steps, await handle.progress_async(), await producer.task_record_async(handle.id)

    steps, last, record = asyncio.run(follow())

    # Then every report came in order, and the async reads agree with the sync ones
    assert steps == [1, 2, 3, 4, 5]
    assert last == handle.progress() and record == handle.record()
    assert record.status is TaskStatus.SUCCESS  # type: ignore[attr-defined]


def test_an_unknown_id_on_the_event_loop(producer: TaskManager) -> None:
    # Given an id the ledger never saw, when each async read asks for it, then it is not found
    for read in (producer.task_status_async, producer.task_progress_async, producer.task_record_async):
        with pytest.raises(TaskRecordNotFound):
            asyncio.run(read("no-such-id"))  # type: ignore[operator]


@on_both_brokers
def test_cancel_a_pending_task_it_never_runs(start_worker, producer: TaskManager, events: EventLog) -> None:
    handle = producer.get_task("spins").send("pending", 0.1)
    assert handle.cancel() is True
    assert handle.status() is TaskStatus.CANCELLED

    start_worker()
    producer.get_task("spins").send("after", 0.1).get_result(timeout=20)
    assert events.all("spins_start", tag="pending") == []
    assert handle.status() is TaskStatus.CANCELLED


@pytest.mark.parametrize(("task", "interrupted"), [("spins", "spins_interrupted"),
                                                   ("async_spins", "async_spins_cancelled")])  # fmt: skip
@on_both_brokers
def test_cancel_a_running_task_interrupts_it(start_worker, producer: TaskManager, events: EventLog,
                                             task: str, interrupted: str) -> None:  # fmt: skip
    start_worker()
    handle = producer.get_task(task).send("run", 30)
    events.wait_for(1, f"{task}_start")
    wait_until(lambda: handle.status() is TaskStatus.STARTED, timeout=5, what="started")

    assert handle.cancel() is True

    events.wait_for(1, interrupted)
    assert handle.status() is TaskStatus.CANCELLED
    time.sleep(0.5)
    assert len(events.all(f"{task}_start")) == 1  # not retried


def test_an_unknown_id(producer: TaskManager) -> None:
    with pytest.raises(TaskRecordNotFound):
        producer.handle("no-such-id")
