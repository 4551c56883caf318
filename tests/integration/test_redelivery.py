"""A task whose worker is killed mid-run is delivered again to another worker (at-least-once)."""

from __future__ import annotations

import signal
import time

import dramatiq
import redis

from aury_tasks import TaskManager, keys
from aury_tasks.broker import AuryRedisBroker

from .events import EventLog, wait_until

#: A short heartbeat timeout, so a dead worker is noticed in seconds (maintenance every ~1 s).
FAST_HEARTBEAT = {"TASK_HEARTBEAT_TIMEOUT": "2"}


def test_the_task_of_a_killed_worker_is_redelivered_to_another(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
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

    # Then, once the first worker's heartbeat is stale, the task runs again there and completes
    _, second_start = events.wait_for(2, "slow_once_start", tag="killed", timeout=20)
    assert second_start["first"] is False
    assert second_start["pid"] != first_start["pid"]
    (end,) = events.wait_for(1, "slow_once_end", tag="killed")
    assert end["pid"] == second_start["pid"]
    assert redis_client.llen(f"{keys.BROKER_NAMESPACE}:fixture") == 0


def _broker(redis_url: str) -> AuryRedisBroker:
    """A broker that takes a worker silent for 0.1 s for dead, and runs maintenance once a minute."""
    return AuryRedisBroker(
        url=redis_url,
        middleware=[],
        namespace=keys.BROKER_NAMESPACE,
        heartbeat_timeout=100,
        maintenance_interval=60,
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
    heartbeats = f"{keys.BROKER_NAMESPACE}:__heartbeats__"
    wait_until(
        lambda: time.time() * 1000 - (redis_client.zscore(heartbeats, dead.broker_id) or 0) > 100,
        timeout=5,
        what="the dead worker's heartbeat to go stale",
    )
    # ... and a live worker that has just run its maintenance while fetching from queue "second"
    live = _broker(redis_url)
    assert next(live.consume("second", timeout=100)) is None

    # When the live worker first fetches from queue "first", within the same maintenance interval
    received = next(live.consume("first", timeout=100))

    # Then that fetch ran maintenance for "first" too: it got the dead worker's message back
    assert received is not None
    assert received.message_id == sent.message_id
    live.close()
