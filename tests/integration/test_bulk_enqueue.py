"""Bulk enqueue: many messages in a few round trips, each exactly as a single send would leave it."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import dramatiq
import pytest
import redis
from redis.connection import AbstractConnection

from aury_tasks import SerializationError, TaskManager, TaskOptionError, TaskStatus
from aury_tasks.broker.build import enqueue_many
from aury_tasks.broker.redis.broker import BULK_BATCH_SIZE, AuryRedisBroker
from aury_tasks.core import keys

from .events import wait_until

PRIORITY_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "priority_modules"
COUNT = 10_000


@pytest.fixture
def tasks(producer: TaskManager, import_modules) -> ModuleType:
    """The fixture task module with ``counted``, imported by the default TaskManager on the test Redis."""
    import_modules(PRIORITY_MODULES)
    return importlib.import_module("priority_modules.ranked.tasks")


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per round trip this process starts (each write of commands to a Redis connection)."""
    sent: list[int] = []
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


def counted_messages(tasks: ModuleType, count: int) -> list[tuple[dramatiq.Message, None]]:
    """``count`` messages of ``counted(0)`` … ``counted(count - 1)``."""
    name = tasks.counted.name
    return [(dramatiq.Message(queue_name="bulk", actor_name=name, args=(n,), kwargs={}, options={}), None)
            for n in range(count)]  # fmt: skip


def test_bulk_enqueue_sends_10000_messages_in_a_few_round_trips_and_each_runs_once(
    tasks: ModuleType, round_trips: list[int], start_worker, redis_client: redis.Redis
) -> None:
    # Given 10,000 messages
    tm = TaskManager.get_instance()
    messages = counted_messages(tasks, COUNT)

    # When they are enqueued in bulk
    enqueued = enqueue_many(tm.broker, messages)

    # Then it took one round trip per batch of messages, plus a few to connect, load the scripts and
    # read the server's clock (one per message would be 10,000), and every message waits, its
    # record saying pending
    assert len(round_trips) <= COUNT // BULK_BATCH_SIZE + 20
    assert [message.message_id for message in enqueued] == [message.message_id for message, _ in messages]
    assert tm.queue_stats("bulk").pending == COUNT
    assert tm.store.count_by_status("bulk", [TaskStatus.PENDING])[TaskStatus.PENDING] == COUNT
    assert {record.status for record in tm.store.get_many(m.message_id for m in enqueued[::97])} == {
        TaskStatus.PENDING
    }

    # When a worker runs them
    start_worker("-q", "bulk", "-c", "8", modules=PRIORITY_MODULES)

    # Then each ran exactly once and its record says so
    def all_succeeded() -> bool:
        return tm.store.count_by_status("bulk", [TaskStatus.SUCCESS])[TaskStatus.SUCCESS] == COUNT

    wait_until(all_succeeded, timeout=100, what=f"{COUNT} bulk tasks to succeed")
    runs = redis_client.hgetall(tasks.RUNS)
    assert len(runs) == COUNT
    assert set(runs.values()) == {"1"}


def test_a_message_that_cannot_be_encoded_stops_the_bulk_before_anything_is_sent(
    tasks: ModuleType, round_trips: list[int], redis_client: redis.Redis
) -> None:
    # Given 10,000 messages, the 5,000th with an argument JSON cannot carry
    tm = TaskManager.get_instance()
    messages = counted_messages(tasks, COUNT)
    bad = messages[4_999][0]
    messages[4_999] = (dramatiq.Message(bad.queue_name, bad.actor_name, (object(),), {}, {}), None)

    # When they are enqueued in bulk, then it raises without a round trip to Redis
    with pytest.raises(TypeError):
        enqueue_many(tm.broker, messages)
    assert round_trips == []

    # And no message nor record was left
    assert tm.queue_stats("bulk").pending == 0
    assert not redis_client.exists(keys.DEFAULT.broker_messages("bulk"), keys.DEFAULT.all_index())

    # ... and the ledger writes of the messages before it were dropped: a send after it writes its own only
    handle = tasks.counted.send_with_options(args=(-1,), queue_name="bulk")
    assert [key for key in redis_client.scan_iter(match=keys.DEFAULT.task_record("*"))] == [
        keys.DEFAULT.task_record(handle.id)
    ]


def test_bulk_enqueue_keeps_delays_and_priorities(tasks: ModuleType, redis_client: redis.Redis) -> None:
    # Given a message to delay, one of priority 7 and one of priority 0
    tm = TaskManager.get_instance()
    (later, _), (urgent, _), (plain, _) = counted_messages(tasks, 3)
    urgent = urgent.copy(options={"priority": 7})

    # When they are enqueued in bulk
    delayed, prioritized, listed = enqueue_many(tm.broker, [(later, 60_000), (urgent, None), (plain, None)])

    # Then each waits where a single send would have put it
    assert delayed.queue_name == "bulk.DQ" and delayed.options["eta"] > time.time() * 1000
    assert redis_client.lrange(keys.DEFAULT.broker_queue("bulk.DQ"), 0, -1) == [
        delayed.options["redis_message_id"]
    ]
    priority_ids = redis_client.zrange(keys.DEFAULT.priority_queue("bulk"), 0, -1)
    assert priority_ids == [prioritized.options["redis_message_id"]]
    assert redis_client.lrange(keys.DEFAULT.broker_queue("bulk"), 0, -1) == [
        listed.options["redis_message_id"]
    ]
    assert tm.task_status(later.message_id) is TaskStatus.SCHEDULED
    assert tm.task_status(urgent.message_id) is TaskStatus.PENDING


def test_bulk_enqueue_leaves_the_callers_messages_alone_and_completes_its_own_in_place(
    tasks: ModuleType, redis_client: redis.Redis
) -> None:
    # Given messages a caller holds, and messages made for the call (as send_many makes them)
    tm = TaskManager.get_instance()
    held = counted_messages(tasks, 2)
    made = [*counted_messages(tasks, 2), (counted_messages(tasks, 1)[0][0], 60_000)]

    # When both are enqueued in bulk, the second as owned
    copies = enqueue_many(tm.broker, held)
    completed = enqueue_many(tm.broker, made, owned=True)

    # Then the caller's messages are untouched (the broker sent copies)
    assert all("redis_message_id" not in message.options for message, _ in held)
    assert all(copy is not message for copy, (message, _) in zip(copies, held, strict=True))
    # and the made ones were sent as they are, but for the delayed one, a copy for the delay queue
    assert completed[0] is made[0][0] and completed[1] is made[1][0]
    assert completed[2] is not made[2][0] and completed[2].queue_name == "bulk.DQ"
    # and every one waits in Redis under the id it was sent with
    queued = redis_client.lrange(keys.DEFAULT.broker_queue("bulk"), 0, -1)
    assert queued == [message.options["redis_message_id"] for message in (*copies, *completed[:2])]
    delayed_id = completed[2].options["redis_message_id"]
    assert redis_client.lrange(keys.DEFAULT.broker_queue("bulk.DQ"), 0, -1) == [delayed_id]


def test_bulk_records_are_those_single_sends_write_new_or_existing(
    tasks: ModuleType, redis_client: redis.Redis
) -> None:
    # Given a task sent once alone, and two messages: a new one and a second send of that task
    tm = TaskManager.get_instance()
    first = tasks.counted.send_with_options(args=(1,), queue_name="bulk", metadata={"batch": "b"})
    before = redis_client.hgetall(keys.DEFAULT.task_record(first.id))
    (fresh, _), (again, _) = counted_messages(tasks, 2)
    fresh = fresh.copy(options={"metadata": {"batch": "b"}})
    again = dramatiq.Message("bulk", tasks.counted.name, (1,), {}, {}, message_id=first.id)

    # When both are enqueued in bulk (one script call for the two)
    enqueue_many(tm.broker, [(fresh, None), (again, None)])

    # Then the new one's record has the fields a single send writes, and the existing record
    # was left as it was (a pending record's send is not a step forward); all three are queued
    record = redis_client.hgetall(keys.DEFAULT.task_record(fresh.message_id))
    assert set(record) == set(before)
    assert record["status"] == "pending" and record["metadata"] == before["metadata"]
    assert redis_client.hgetall(keys.DEFAULT.task_record(first.id)) == before
    assert redis_client.llen(keys.DEFAULT.broker_queue("bulk")) == 3


def test_bulk_enqueue_against_one_enqueue_per_message(tasks: ModuleType) -> None:
    # Given 10,000 messages to send each way
    broker = TaskManager.get_instance().broker
    assert isinstance(broker, AuryRedisBroker)
    messages = counted_messages(tasks, COUNT)

    # When they are sent in bulk, then one by one
    started = time.perf_counter()
    broker.enqueue_many(messages)
    bulk = time.perf_counter() - started
    started = time.perf_counter()
    for message, delay in messages:
        broker.enqueue(message, delay=delay)
    single = time.perf_counter() - started

    # Then (a measure, not a test) see how much faster the bulk was
    print(f"\n{COUNT:,} messages: enqueue_many {bulk:.2f} s, broker.enqueue loop {single:.2f} s"
          f" ({single / bulk:.1f}x)")  # fmt: skip


def test_send_many_sends_in_batches_with_the_checks_of_send(
    tasks: ModuleType, round_trips: list[int], start_worker, redis_client: redis.Redis
) -> None:
    # Given 2,000 calls of a task, as tuples of positional arguments and dicts of keyword ones
    tm = TaskManager.get_instance()
    calls = [(n,) if n % 2 else {"number": n} for n in range(2_000)]

    # When they are sent with send_many
    handles = tasks.counted.send_many(calls, metadata={"batch": "b1"})

    # Then it took a handful of round trips, each task has its pending record with the metadata
    assert len(round_trips) <= 2_000 // BULK_BATCH_SIZE + 15
    assert len(handles) == 2_000 and len({handle.id for handle in handles}) == 2_000
    record = tm.task_record(handles[7].id)
    assert (record.status, record.args, record.metadata) == (TaskStatus.PENDING, [7], {"batch": "b1"})
    assert tm.task_record(handles[8].id).kwargs == {"number": 8}

    # And a worker runs each once
    start_worker("-q", "bulk", "-c", "8", modules=PRIORITY_MODULES)
    wait_until(lambda: redis_client.hlen(tasks.RUNS) == 2_000, timeout=60, what="2,000 runs")
    assert set(redis_client.hgetall(tasks.RUNS).values()) == {"1"}


def test_send_many_names_a_bad_argument_and_sends_nothing(
    tasks: ModuleType, redis_client: redis.Redis
) -> None:
    with pytest.raises(SerializationError, match="argument 0"):
        tasks.counted.send_many([(1,), (2,), ({1, 2},), (4,)])
    with pytest.raises(TaskOptionError, match="a tuple of positional arguments or a dict"):
        tasks.counted.send_many([(1,), 2])
    assert redis_client.llen(keys.DEFAULT.broker_queue("bulk")) == 0
