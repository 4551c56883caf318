"""A task's record moves through every status, forward only, with a real worker.

Each test watches the status changes the ledger announces on the tasks' event channels (a
pattern subscription made before anything is sent), so it sees every transition, in order.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from brokers import on_both_brokers

from aury_tasks import TaskExpired, TaskFailed, TaskHandle, TaskManager, TaskStatus
from aury_tasks.core import keys

from .events import EventLog, dead_lettered_ids, wait_until

#: A short heartbeat timeout, so a killed worker's message is given back in seconds.
FAST_HEARTBEAT = {"TASK_HEARTBEAT_TIMEOUT": "2"}


class StatusChanges:
    """Every status change announced on the ledger's event channels, per task id, in order."""

    def __init__(self, client: redis.Redis) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe(keys.DEFAULT.task_events("*"))
        # The subscription is in place once Redis confirmed it: nothing sent later is missed.
        confirmed = self.pubsub.get_message(timeout=5)
        assert confirmed is not None and confirmed["type"] == "psubscribe"
        self.seen: dict[str, list[str]] = {}
        self._prefix = keys.DEFAULT.task_events("")

    def of(self, task_id: str) -> list[str]:
        """The statuses ``task_id`` went through so far."""
        while (message := self.pubsub.get_message(timeout=0.05)) is not None:
            data = message["data"]
            if message["type"] == "pmessage" and data.startswith("s:"):
                self.seen.setdefault(message["channel"].removeprefix(self._prefix), []).append(data[2:])
        return list(self.seen.get(task_id, []))

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture
def changes(redis_client: redis.Redis) -> Iterator[StatusChanges]:
    watcher = StatusChanges(redis_client)
    yield watcher
    watcher.close()


def _without_started(statuses: list[str]) -> list[str]:
    # A run shorter than 0.1 s writes no "started"; a slow machine may make a short task longer.
    return [status for status in statuses if status != "started"]


@on_both_brokers
def test_a_delayed_task_is_scheduled_then_pending_then_started_then_succeeds(
    start_worker, producer: TaskManager, changes: StatusChanges
) -> None:
    # Given a worker
    start_worker()

    # When a task that runs 0.5 s is sent with a delay of 1 s
    handle = producer.get_task("runs").send_with_options(args=["late", 0.5], delay=1)

    # Then it is scheduled at first, with the moment it becomes due
    assert handle.status() is TaskStatus.SCHEDULED
    assert handle.record().eta is not None
    # ... and once due it is pending, then started (it runs past 0.1 s), then a success
    assert handle.get_result(timeout=20) == "late"
    assert changes.of(handle.id) == ["scheduled", "pending", "started", "success"]
    record = handle.record()
    assert (record.status, record.attempt, record.result) == (TaskStatus.SUCCESS, 1, "late")
    assert record.started_at is not None and record.finished_at is not None


def test_a_late_write_never_moves_an_ended_record_back(start_worker, producer: TaskManager) -> None:
    # Given a task that succeeded
    start_worker()
    handle = producer.get_task("echo").send({"n": 1})
    assert handle.get_result(timeout=20) == {"n": 1}
    before = handle.record()

    # When writes of earlier statuses arrive late (a delayed enqueue write, a start write),
    # and even another final status
    store = producer.store
    assert store.transition(handle.id, TaskStatus.PENDING, attempt=1) is False
    assert store.transition(handle.id, TaskStatus.STARTED, attempt=2, worker="late:1") is False
    assert store.transition(handle.id, TaskStatus.FAILURE, attempt=1, error_type="Late") is False

    # Then nothing changed
    after = handle.record()
    assert after == before
    assert after.status is TaskStatus.SUCCESS


@on_both_brokers
def test_a_task_that_fails_once_is_retrying_between_attempts(
    start_worker, producer: TaskManager, changes: StatusChanges, events: EventLog
) -> None:
    # Given a worker
    start_worker()

    # When a task fails its first attempt (retried 0.5 to 1 s later), and another fails every one
    flaky = producer.get_task("fails_once").send("flaky")
    doomed = producer.get_task("always_fails").send("doomed")

    # Then between the attempts the flaky one is retrying: attempt 1 failed, the next one is due
    wait_until(lambda: flaky.status() is TaskStatus.RETRYING, timeout=10, what="retrying")
    retrying = flaky.record()
    assert retrying.attempt == 1
    assert retrying.eta is not None
    assert [(error["attempt"], error["type"]) for error in retrying.errors] == [(1, "RuntimeError")]

    # ... and its second attempt succeeds
    assert flaky.get_result(timeout=20) == "retried flaky"
    record = flaky.record()
    assert (record.status, record.attempt) == (TaskStatus.SUCCESS, 2)
    assert _without_started(changes.of(flaky.id)) == ["pending", "retrying", "pending", "success"]
    assert len(events.all("fails_once", tag="flaky")) == 2

    # ... while the other one is retried twice and then fails for good at attempt 3
    with pytest.raises(TaskFailed):
        doomed.get_result(timeout=20)
    assert _without_started(changes.of(doomed.id)) == [
        "pending", "retrying", "pending", "retrying", "pending", "failure",
    ]  # fmt: skip
    assert doomed.record().attempt == 3


def test_a_task_that_ignores_its_result_succeeds_with_none(start_worker, producer: TaskManager) -> None:
    # Given a worker
    start_worker()

    # When a task declared with ignore_result=True returns a value
    handle = producer.get_task("ignored").send({"big": "value"})

    # Then it succeeds, but its result is not kept
    assert handle.get_result(timeout=20) is None
    record = handle.record()
    assert record.status is TaskStatus.SUCCESS
    assert record.result is None


def test_tasks_not_run_in_time_expire_or_die_and_never_run(
    start_worker, producer: TaskManager, changes: StatusChanges, events: EventLog
) -> None:
    # Given, while no worker runs, a task that expires in 0.5 s and one with a max age of 0.5 s
    runs = producer.get_task("runs")
    expiring = runs.send_with_options(args=["expiring"], expires=0.5)
    too_old = runs.send_with_options(args=["too old"], max_age=500)
    assert expiring.record().expires_at is not None
    time.sleep(1)  # the only way to let a deadline pass

    # When a worker starts and receives them (with a fresh task sent after them)
    start_worker()
    assert runs.send("fresh").get_result(timeout=20) == "fresh"

    # Then the expired task is expired and never ran; waiting for its result says so
    with pytest.raises(TaskExpired):
        expiring.get_result(timeout=20)
    assert changes.of(expiring.id) == ["pending", "expired"]
    assert expiring.record().reason == "expired"
    # ... and the one past its max age was dead-lettered, saying why
    with pytest.raises(TaskFailed):
        too_old.get_result(timeout=20)
    assert changes.of(too_old.id) == ["pending", "dead"]
    assert "age limit" in too_old.record().reason
    assert [event["tag"] for event in events.all("runs")] == ["fresh"]


def test_a_message_for_an_unknown_task_is_dead_with_its_reason(
    start_worker, producer: TaskManager, changes: StatusChanges, redis_client: redis.Redis
) -> None:
    # Given a worker, and a message for a task no worker knows (sent through the broker as is)
    start_worker()
    message = producer.broker_for_queue("fixture").enqueue(
        dramatiq.Message(
            queue_name="fixture", actor_name="gone.tasks.removed", args=(), kwargs={}, options={}
        )
    )
    handle = producer.handle(message.message_id)

    # When the worker receives it
    with pytest.raises(TaskFailed) as caught:
        handle.get_result(timeout=20)

    # Then it is dead, saying why, and its message waits in the dead letters
    assert "unknown task 'gone.tasks.removed'" in caught.value.error_message
    record = handle.record()
    assert record.status is TaskStatus.DEAD
    assert record.reason == "unknown task 'gone.tasks.removed'"
    assert (record.task_name, record.queue_name) == ("gone.tasks.removed", "fixture")
    assert changes.of(handle.id) == ["pending", "dead"]
    wait_until(lambda: handle.id in dead_lettered_ids(redis_client, "fixture"), timeout=5, what="dead letter")


def test_a_cancelled_scheduled_task_never_runs(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    runs = producer.get_task("runs")
    # Given a scheduled task cancelled while no worker runs
    cancelled_offline = runs.send_with_options(args=["offline"], delay=1)
    assert cancelled_offline.cancel() is True

    # ... and a worker that has fetched another scheduled task and holds it until it is due
    start_worker()
    held = runs.send_with_options(args=["held"], delay=2)
    wait_until(
        lambda: redis_client.llen(keys.DEFAULT.broker_queue("fixture.DQ")) == 0,
        timeout=5,
        what="the worker to fetch the delayed message",
    )

    # When that one is cancelled before it is due
    assert held.status() is TaskStatus.SCHEDULED
    assert held.cancel() is True

    # Then, once both were due and their messages are gone, neither ran and both stay cancelled
    marker = runs.send_with_options(args=["marker"], delay=2.5)
    assert marker.get_result(timeout=20) == "marker"
    wait_until(
        lambda: (
            not redis_client.hlen(keys.DEFAULT.broker_messages("fixture"))
            and not redis_client.hlen(keys.DEFAULT.broker_messages("fixture.DQ"))
        ),
        timeout=10,
        what="every message to be acknowledged",
    )
    assert [event["tag"] for event in events.all("runs")] == ["marker"]
    for handle in (cancelled_offline, held):
        record = handle.record()
        assert record.status is TaskStatus.CANCELLED
        assert record.reason == "cancelled by request"


@on_both_brokers
def test_a_killed_workers_task_stays_started_until_it_is_redelivered(
    start_worker, producer: TaskManager, events: EventLog
) -> None:
    # Given a worker in the middle of a long task
    first_worker = start_worker(env=FAST_HEARTBEAT)
    handle = producer.get_task("slow_once").send("killed", 60)
    events.wait_for(1, "slow_once_start", tag="killed")
    wait_until(lambda: handle.status() is TaskStatus.STARTED, timeout=5, what="started")
    first_run = handle.record()

    # When the worker is killed, with no chance to write anything
    first_worker.signal_group(signal.SIGKILL)
    first_worker.wait()

    # Then the record still says started, by that worker
    assert handle.status() is TaskStatus.STARTED

    # When another worker starts, and gets the message back once the first one's heartbeat is stale
    start_worker(env=FAST_HEARTBEAT)

    # Then the redelivered run completes the record: a success of the same attempt, by the new worker
    assert handle.get_result(timeout=30) is None
    record = handle.record()
    assert (record.status, record.attempt) == (TaskStatus.SUCCESS, 1)
    assert record.worker != first_run.worker
    assert record.errors == []


def test_a_handle_rebuilt_by_a_fresh_manager_reads_the_same_task(start_worker, producer: TaskManager) -> None:
    # Given a task that succeeded
    start_worker()
    sent = producer.get_task("echo").send([1, "two"])
    assert sent.get_result(timeout=20) == [1, "two"]

    # When another manager (another process, say) rebuilds a handle from the id alone
    fresh = TaskManager.get_instance("fresh")
    assert fresh is not producer
    rebuilt = fresh.handle(sent.id)

    # Then it reads the same task: name, queue, status, result and record
    assert isinstance(rebuilt, TaskHandle)
    assert (rebuilt.task_name, rebuilt.queue_name) == (sent.task_name, sent.queue_name)
    assert rebuilt.status() is TaskStatus.SUCCESS
    assert rebuilt.get_result(timeout=5) == [1, "two"]
    assert rebuilt.record() == sent.record()
