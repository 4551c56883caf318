"""``soft_timeout``: checked when a task is declared, carried as ``soft_time_limit``, enforced by a worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from aury_tasks import SoftTimeLimitExceeded, TaskManager, TaskOptionError

StartWorker = Callable[[], dramatiq.Worker]


def _sleep_in_steps(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_soft_timeout_is_carried_in_ms_as_an_actor_option() -> None:
    # Given the default manager (producer mode)
    tm = TaskManager.get_instance()

    # When a task is declared with a soft limit below its time limit
    @tm.conditional_task(soft_timeout=0.5, timeout=5)
    def export(report_id: str) -> None: ...

    # Then the option is accepted and carried in milliseconds, next to time_limit
    assert export.options["soft_time_limit"] == 500
    assert export.options["time_limit"] == 5000


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"soft_timeout": 5, "timeout": 5}, ["soft_timeout=5", "timeout=5"]),
        ({"soft_timeout": 9.5, "timeout": 2}, ["soft_timeout=9.5", "timeout=2"]),
        ({"soft_timeout": 601}, ["soft_timeout=601", "timeout=600 (TASK_TIMEOUT)"]),
        ({"soft_timeout": 0}, ["soft_timeout", "above 0"]),
        ({"soft_timeout": "10"}, ["soft_timeout", "'10'"]),
        ({"soft_timeout": True}, ["soft_timeout", "True"]),
    ],
)
def test_a_soft_timeout_not_below_the_timeout_is_refused_at_declaration(
    options: dict[str, object], words: list[str]
) -> None:
    # Given the default manager, whose default timeout is 600 s
    tm = TaskManager.get_instance()

    # When a task is declared with a soft limit that cannot come first, or is not a number
    with pytest.raises(TaskOptionError) as refused:

        @tm.conditional_task(**options)  # type: ignore[call-overload]
        def export(report_id: str) -> None: ...

    # Then the error names the task and the values
    assert "export" in refused.value.message
    for word in words:
        assert word in refused.value.message


def test_eager_mode_accepts_soft_timeout_and_does_not_enforce_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given eager mode and a task whose run outlasts its soft limit
    monkeypatch.setenv("TASK_RUN_MODE", "eager")
    tm = TaskManager.get_instance()

    @tm.conditional_task(soft_timeout=0.01, timeout=5)
    def slow() -> str:
        _sleep_in_steps(0.1)
        return "finished"

    # When it is sent, Then it runs inline to its end
    assert slow.send().eager_result == "finished"


def test_a_worker_raises_it_in_sync_and_async_tasks_that_can_clean_up(
    worker_tm: TaskManager, stub_worker: StartWorker
) -> None:
    # Given a sync and an async task that catch their soft limit, and one that has none
    outcomes: list[str] = []

    @worker_tm.conditional_task(queue_name="jobs", soft_timeout=0.1, timeout=5, max_retries=0)
    def sync_job() -> str:
        try:
            _sleep_in_steps(5)
        except SoftTimeLimitExceeded:
            outcomes.append("sync cleaned")
        return "cleaned"

    @worker_tm.conditional_task(queue_name="jobs", soft_timeout=0.1, timeout=5, max_retries=0)
    async def async_job() -> str:
        try:
            await asyncio.sleep(5)
        except SoftTimeLimitExceeded as exc:
            assert isinstance(exc, asyncio.CancelledError)  # asyncio sees a cancellation
            await asyncio.sleep(0)  # the task is not left cancelling: it can await while cleaning up
            outcomes.append("async cleaned")
        return "cleaned"

    @worker_tm.conditional_task(queue_name="jobs", max_retries=0)
    async def unlimited() -> str:
        await asyncio.sleep(0.01)
        outcomes.append("unlimited")
        return "done"

    broker = worker_tm.broker
    assert isinstance(broker, StubBroker)
    worker = stub_worker()

    # When they are sent
    sync_job.send()
    async_job.send()
    unlimited.send()
    broker.join("jobs", fail_fast=False, timeout=10_000)
    worker.join()

    # Then the limited ones cleaned up and succeeded, the other ran as usual
    assert sorted(outcomes) == ["async cleaned", "sync cleaned", "unlimited"]
    assert broker.dead_letters == []


def test_a_message_option_overrides_or_removes_the_soft_limit(
    worker_tm: TaskManager, stub_worker: StartWorker
) -> None:
    # Given a task whose soft limit is short
    outcomes: list[str] = []

    @worker_tm.conditional_task(queue_name="jobs", soft_timeout=0.1, timeout=5, max_retries=0)
    def job(tag: str, seconds: float) -> None:
        try:
            _sleep_in_steps(seconds)
            outcomes.append(f"{tag} finished")
        except SoftTimeLimitExceeded:
            outcomes.append(f"{tag} cleaned")

    broker = worker_tm.broker
    assert isinstance(broker, StubBroker)
    worker = stub_worker()

    # When it is sent as declared, with a longer soft limit, and with none
    job.send("declared", 5)
    job.send_with_options(args=("longer", 0.3), soft_time_limit=3000)
    job.send_with_options(args=("none", 0.3), soft_time_limit=None)
    broker.join("jobs", fail_fast=False, timeout=10_000)
    worker.join()

    # Then the message's option applied, and None means no soft limit
    assert sorted(outcomes) == ["declared cleaned", "longer finished", "none finished"]
