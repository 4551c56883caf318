"""A task whose worker is killed mid-run is delivered again to another worker (at-least-once)."""

from __future__ import annotations

import signal
import time

import dramatiq
import pytest
import redis
from brokers import on_both_brokers

from aury_tasks import TaskManager, TaskStatus
from aury_tasks.broker.redis.broker import AuryRedisBroker
from aury_tasks.broker.redis.recovery import MarkSuspectsRunning, recover_dead_workers_messages
from aury_tasks.core import keys

from .events import EventLog, wait_until

#: A short heartbeat timeout, so a dead worker is noticed in seconds (maintenance every ~1 s).
FAST_HEARTBEAT = {"TASK_HEARTBEAT_TIMEOUT": "2"}


@on_both_brokers
def test_the_task_of_a_killed_worker_is_redelivered_to_another(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis, on_rabbitmq
) -> None:
    # Given a worker in the middle of a long task
    first_worker = start_worker(env=FAST_HEARTBEAT)
    producer.get_task("slow_once").send("killed", 60)
    (first_start,) = events.wait_for(1, "slow_once_start", tag="killed")
    assert first_start["first"] is True

    # When the worker and its worker processes are killed at once (no chance to clean up)
    first_worker.signal_group(signal.SIGKILL)
    assert first_worker.wait() == -signal.SIGKILL
    assert events.all("slow_once_end") == []
    # ... and another worker starts
    start_worker(env=FAST_HEARTBEAT)

    # Then, once the first worker's heartbeat is stale (on RabbitMQ: once its connection closed),
    # the task runs again there and completes
    _, second_start = events.wait_for(2, "slow_once_start", tag="killed", timeout=20)
    assert second_start["first"] is False
    assert second_start["pid"] != first_start["pid"]
    (end,) = events.wait_for(1, "slow_once_end", tag="killed")
    assert end["pid"] == second_start["pid"]
    if not on_rabbitmq:
        assert redis_client.llen(f"{keys.DEFAULT.prefix}:fixture") == 0


def _broker(redis_url: str, max_deliveries: int = 5) -> AuryRedisBroker:
    """A broker that takes a worker silent for 0.1 s for dead, and runs maintenance once a minute."""
    return AuryRedisBroker(
        url=redis_url,
        middleware=[],
        namespace=keys.DEFAULT.prefix,
        heartbeat_timeout=100,
        maintenance_interval=60,
        max_deliveries=max_deliveries,
    )


def test_maintenance_gives_back_a_dead_workers_messages_on_every_queue(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a worker that fetched a message from queue "first" and died without acknowledging it
    dead = _broker(redis_url)
    sent = dead.enqueue(
        dramatiq.Message(queue_name="first", actor_name="noop", args=(), kwargs={}, options={})
    )
    fetched = next(dead.consume("first", timeout=100))
    assert fetched is not None
    assert fetched.message_id == sent.message_id
    dead.close()
    heartbeats = f"{keys.DEFAULT.prefix}:__heartbeats__"
    wait_until(
        lambda: time.time() * 1000 - (redis_client.zscore(heartbeats, dead.broker_id) or 0) > 100,
        timeout=5,
        what="the dead worker's heartbeat to go stale",
    )
    # ... and a live worker that has just run its maintenance while fetching from queue "second"
    live = _broker(redis_url)
    try:
        assert next(live.consume("second", timeout=100)) is None

        # When the live worker first fetches from queue "first", within the same maintenance interval
        # (a second for the fetch: a loaded machine may take more than a few ms)
        received = next(live.consume("first", timeout=1000))

        # Then that fetch ran maintenance for "first" too: it got the dead worker's message back
        assert received is not None
        assert received.message_id == sent.message_id
    finally:
        live.close()  # its wake-up subscription must not outlive the test, failed or not


def _wait_for_stale_heartbeat(redis_client: redis.Redis, broker: AuryRedisBroker) -> None:
    last_beat = redis_client.zscore(f"{keys.DEFAULT.prefix}:__heartbeats__", broker.broker_id) or 0
    wait_until(lambda: time.time() * 1000 - last_beat > 100, timeout=5, what="a stale heartbeat")


def _noop(queue_name: str = "first") -> dramatiq.Message:
    return dramatiq.Message(queue_name=queue_name, actor_name="noop", args=(), kwargs={}, options={})


def test_a_message_whose_runs_keep_killing_their_worker_is_dead_lettered(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a message, and workers that each fetch it, start it and die (a limit of 3 deliveries)
    sent = _broker(redis_url, 3).enqueue(_noop())
    received = []
    for _ in range(4):
        worker = _broker(redis_url, 3)  # a new worker process: its first fetch runs the maintenance
        message = next(worker.consume("first", timeout=100))
        received.append(message.message_id if message is not None else None)
        if message is not None:  # what the worker does just before running it
            MarkSuspectsRunning().before_process_message(worker, message)
        worker.close()
        _wait_for_stale_heartbeat(redis_client, worker)

    # Then it was delivered 3 times, and at the 4th fetch it was a dead letter instead
    assert received == [sent.message_id] * 3 + [None]
    delivery_id = sent.options["redis_message_id"]
    assert redis_client.zscore(keys.DEFAULT.dead_letters("first"), delivery_id) is not None
    assert redis_client.hexists(keys.DEFAULT.dead_letter_messages("first"), delivery_id)
    assert redis_client.hlen(keys.DEFAULT.broker_messages("first")) == 0
    assert not redis_client.exists(keys.DEFAULT.suspects("first"), keys.DEFAULT.running_suspects("first"))


def test_a_message_only_prefetched_by_a_worker_that_died_is_not_blamed_again(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a killer message and an innocent one behind it, and a limit of 2 deliveries
    killer = _broker(redis_url, 2).enqueue(_noop())
    innocent = _broker(redis_url, 2).enqueue(_noop())
    innocent_id = innocent.options["redis_message_id"]

    # When two workers in turn prefetch both, start the killer and die
    for _ in range(2):
        worker = _broker(redis_url, 2)
        message = next(worker.consume("first", prefetch=2, timeout=100))
        assert message is not None and message.message_id == killer.message_id
        MarkSuspectsRunning().before_process_message(worker, message)
        worker.close()
        _wait_for_stale_heartbeat(redis_client, worker)

    # Then the killer is a dead letter after its 2 runs, while the innocent message, counted once
    # (at the first death nothing told the two apart), is delivered to the next worker
    survivor = _broker(redis_url, 2)
    consumer = survivor.consume("first", prefetch=2, timeout=100)
    message = next(consumer)
    assert message is not None and message.message_id == innocent.message_id
    assert (
        redis_client.zscore(keys.DEFAULT.dead_letters("first"), killer.options["redis_message_id"])
        is not None
    )
    assert redis_client.hgetall(keys.DEFAULT.suspects("first")) == {innocent_id: "1"}

    # ... and once acknowledged it is no longer a suspect (the next maintenance forgets it)
    consumer.ack(message)
    assert survivor.flush_acks()
    survivor._recover("first")
    assert not redis_client.exists(keys.DEFAULT.suspects("first"))
    survivor.close()


# Flaky under load: once in four full runs it hung until the timeout (note of 2026-12-08).
@pytest.mark.slow
def test_a_task_that_kills_its_worker_is_dead_lettered_after_max_deliveries(
    start_worker, producer: TaskManager, events: EventLog
) -> None:
    # Given a task that kills its worker process every time, and a limit of 3 deliveries
    env = {"TASK_HEARTBEAT_TIMEOUT": "1", "TASK_MAX_DELIVERIES": "3"}
    handle = producer.get_task("kills_itself").send("oom")

    # When workers keep being started (as a supervisor would restart them)
    def dead() -> bool:
        return handle.status() is TaskStatus.DEAD

    deaths = 0
    while not dead() and deaths < 6:
        worker = start_worker("-q", "fixture", env=env, ready=False)
        while worker.process.poll() is None and not dead():
            time.sleep(0.05)
        deaths += worker.process.poll() is not None

    # Then it ran 3 times, and its record says why it is dead; it is a dead letter
    assert dead()
    assert len(events.all("kills_itself", tag="oom")) == 3
    record = producer.task_record(handle.id)
    assert record.reason == "redelivery_limit: 3 deliveries all killed their worker"
    assert [letter.task_id for letter in producer.dead_letters("fixture").list()] == [handle.id]


def test_after_a_stall_a_process_whose_own_heartbeat_is_old_takes_no_ones_messages(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a worker holding a message, and another process; then a stall during which neither
    # could beat (both heartbeats made older than the timeout)
    holder, other = _broker(redis_url), _broker(redis_url)
    sent = holder.enqueue(_noop())
    assert next(holder.consume("first", timeout=100)) is not None
    other._recover("first")  # it has beaten once
    heartbeats = f"{keys.DEFAULT.prefix}:__heartbeats__"
    long_ago = time.time() * 1000 - 10_000
    redis_client.zadd(heartbeats, {holder.broker_id: long_ago, other.broker_id: long_ago})
    fetched = keys.DEFAULT.broker_fetched(holder.broker_id, "first")

    # When the other process runs its recovery first after the stall
    recovered = other._recover("first")

    # Then it takes nothing (its own heartbeat says it could not beat either), and beats again
    assert recovered is False
    assert redis_client.smembers(fetched) == {sent.options["redis_message_id"]}
    assert redis_client.zscore(heartbeats, other.broker_id) > long_ago

    # ... while at its next pass a holder that stayed silent is dead, and its message comes back
    assert other._recover("first") is True
    assert not redis_client.exists(fetched)
    assert redis_client.lrange(keys.DEFAULT.broker_queue("first"), 0, -1) == [
        sent.options["redis_message_id"]
    ]
    holder.close()
    other.close()


def test_with_a_heartbeat_timeout_of_0_every_workers_messages_are_given_back(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # (Dramatiq's maintenance then takes every worker for dead; its own tests rely on it.)
    # Given a worker holding a message, and another broker that has beaten before
    holder = _broker(redis_url)
    recovering = _broker(redis_url)
    try:
        sent = holder.enqueue(_noop())
        assert holder.do_fetch("first", 1)
        assert recovering.do_fetch("second", 1) == []
        own = keys.DEFAULT.broker_heartbeats()
        beaten = redis_client.zscore(own, recovering.broker_id)
        wait_until(lambda: time.time() * 1000 > (beaten or 0) + 2, timeout=5, what="a beat in the past")

        # When that broker, its heartbeat timeout 0, recovers the queue
        recovering.heartbeat_timeout = 0
        assert recover_dead_workers_messages(recovering, "first") == []

        # Then the message is back in its queue, no longer held
        assert redis_client.lrange(keys.DEFAULT.broker_queue("first"), 0, -1) == [
            sent.options["redis_message_id"]
        ]
        assert not redis_client.exists(keys.DEFAULT.broker_fetched(holder.broker_id, "first"))
    finally:
        holder.close()
        recovering.close()


def test_a_dead_workers_messages_come_back_ahead_of_those_waiting_in_the_queue(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a worker that fetched a message and died, and two messages sent after it, waiting
    holder = _broker(redis_url)
    first = holder.enqueue(_noop())
    assert holder.do_fetch("first", 1)
    holder.close()
    waiting = [_broker(redis_url).enqueue(_noop()) for _ in range(2)]
    _wait_for_stale_heartbeat(redis_client, holder)

    # When another process recovers the queue
    recovering = _broker(redis_url)
    assert recovering._recover("first") is True

    # Then the dead worker's message is at the head of the queue: it is fetched next, not last
    ids = [message.options["redis_message_id"] for message in (first, *waiting)]
    assert redis_client.lrange(keys.DEFAULT.broker_queue("first"), 0, -1) == ids
    recovering.close()
