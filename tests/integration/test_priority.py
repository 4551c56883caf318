"""Priorities on Redis: a waiting message of higher priority is fetched first, FIFO within a priority.

Each test runs a real ``aum worker`` with one thread (so it fetches 2 messages at a time, its
prefetch) on the ``ranked`` fixture tasks, which push their tag on a list as they start.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import dramatiq
import pytest
import redis

from aury_tasks import TaskManager
from aury_tasks.broker.build import enqueue_many
from aury_tasks.broker.redis.broker import AuryRedisBroker
from aury_tasks.core import keys

from .events import wait_until

PRIORITY_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "priority_modules"
#: Messages the one-thread worker holds (``--prefetch``; Dramatiq's default: 2 per thread).
PREFETCH = 2


@pytest.fixture
def ranked(producer: TaskManager, import_modules) -> ModuleType:
    """The ``ranked`` fixture task module, imported by the default TaskManager sending to the test Redis."""
    import_modules(PRIORITY_MODULES)
    return importlib.import_module("priority_modules.ranked.tasks")


@pytest.fixture
def one_thread_worker(start_worker):
    """Start a worker on the ``ranked`` queue with one thread, holding :data:`PREFETCH` messages."""
    return lambda: start_worker(
        "-q", "ranked", "-c", "1", "--prefetch", str(PREFETCH), modules=PRIORITY_MODULES
    )


def started(client: redis.Redis, ranked: ModuleType, count: int, *, timeout: float = 30.0) -> list[str]:
    """The tags of the ranked tasks in the order they started, once at least ``count`` have."""
    return wait_until(
        lambda: (tags := client.lrange(ranked.STARTED, 0, -1)) and len(tags) >= count and tags,
        timeout=timeout,
        what=f"{count} ranked tasks to start",
    )


def low_messages(ranked: ModuleType, tags: list[str]) -> list[tuple[dramatiq.Message, None]]:
    """Messages of priority 0 for ``ranked.ranked``, one per tag, to send with ``enqueue_many``."""
    name = ranked.ranked.name
    return [(dramatiq.Message(queue_name="ranked", actor_name=name, args=(tag,), kwargs={}, options={}), None)
            for tag in tags]  # fmt: skip


def test_a_priority_9_message_runs_before_10000_waiting_ones(
    ranked: ModuleType, one_thread_worker, redis_client: redis.Redis
) -> None:
    # Given 10,000 waiting messages of priority 0, and then one of priority 9
    tm = TaskManager.get_instance()
    enqueue_many(tm.broker, low_messages(ranked, [f"low-{i}" for i in range(10_000)]))
    ranked.ranked.send_with_options(args=("high",), priority=9)
    assert tm.queue_stats("ranked").pending == 10_001

    # When a worker with one thread starts
    one_thread_worker()

    # Then the priority-9 message is the first task to run, the others follow in the order sent
    assert started(redis_client, ranked, 3)[:3] == ["high", "low-0", "low-1"]


def test_priorities_run_highest_first_and_in_order_sent_within_a_priority(
    ranked: ModuleType, one_thread_worker, redis_client: redis.Redis
) -> None:
    # Given messages of priorities 0, 3, 9 and 5 sent in turn
    sent = [(f"p{priority}-{turn}", priority) for turn in range(4) for priority in (0, 3, 9, 5)]
    for tag, priority in sent:
        ranked.ranked.send_with_options(args=(tag,), priority=priority)

    # When a worker with one thread runs them
    one_thread_worker()

    # Then they run highest priority first, in the order they were sent within a priority
    expected = [tag for tag, priority in sorted(sent, key=lambda item: -item[1])]
    assert started(redis_client, ranked, len(sent)) == expected


def test_a_delayed_priority_message_keeps_its_priority_once_due(
    ranked: ModuleType, one_thread_worker, redis_client: redis.Redis
) -> None:
    # Given a backlog of priority 0 whose first task waits at a gate, and then (the gate task
    # running) a priority-9 message delayed by half a second
    tm = TaskManager.get_instance()
    enqueue_many(tm.broker, low_messages(ranked, [ranked.GATED] + [f"low-{i}" for i in range(1, 50)]))
    one_thread_worker()
    assert started(redis_client, ranked, 1) == [ranked.GATED]
    ranked.ranked.send_with_options(args=("late",), priority=9, delay=0.5)

    # When the delayed message is due (the worker moves it to the queue's priority set), then the
    # gate opens
    wait_until(
        lambda: redis_client.zcard(keys.DEFAULT.priority_queue("ranked")) == 1, timeout=15, what="late due"
    )
    redis_client.rpush(ranked.GATE, "open")

    # Then it runs before every waiting message but the ones the worker had already fetched
    order = started(redis_client, ranked, PREFETCH + 1)
    assert order[: PREFETCH + 1] == [ranked.GATED, "low-1", "late"]


def test_a_retry_keeps_its_priority(ranked: ModuleType, one_thread_worker, redis_client: redis.Redis) -> None:
    # Given a priority-9 task that fails its first attempt (retried after 0.1 to 0.2 s), sent
    # after a backlog of priority 0 whose first task waits at a gate
    tm = TaskManager.get_instance()
    enqueue_many(tm.broker, low_messages(ranked, [ranked.GATED] + [f"low-{i}" for i in range(1, 50)]))
    ranked.fails_once.send_with_options(args=("flaky",), priority=9)
    one_thread_worker()
    assert started(redis_client, ranked, 2) == ["flaky", ranked.GATED]

    # When its retry is due (in the queue's priority set), then the gate opens
    wait_until(
        lambda: redis_client.zcard(keys.DEFAULT.priority_queue("ranked")) == 1, timeout=15, what="retry due"
    )
    redis_client.rpush(ranked.GATE, "open")

    # Then the retry runs before every waiting message but the ones the worker had already fetched
    order = started(redis_client, ranked, 4)
    assert order[:4] == ["flaky", ranked.GATED, "low-1", "flaky"]


def test_a_priority_message_sent_to_a_busy_worker_overtakes_its_backlog(
    ranked: ModuleType, one_thread_worker, redis_client: redis.Redis
) -> None:
    # Given a running worker busy at a gate, with a backlog of 200 messages of priority 0
    one_thread_worker()
    tm = TaskManager.get_instance()
    enqueue_many(tm.broker, low_messages(ranked, [ranked.GATED] + [f"low-{i}" for i in range(1, 200)]))
    assert started(redis_client, ranked, 1) == [ranked.GATED]

    # When a message of priority 9 is sent, then the gate opens
    ranked.ranked.send_with_options(args=("high",), priority=9)
    redis_client.rpush(ranked.GATE, "open")

    # Then it runs before all of the backlog but what the worker had fetched (its prefetch)
    order = started(redis_client, ranked, PREFETCH + 1)
    assert "high" in order[: PREFETCH + 1]
    assert order[0] == ranked.GATED


def test_waiting_priority_messages_count_as_pending_and_flush_drops_them(
    ranked: ModuleType, redis_client: redis.Redis
) -> None:
    # Given two messages waiting with a priority and one without
    tm = TaskManager.get_instance()
    ranked.ranked.send_with_options(args=("a",), priority=4)
    ranked.urgent.send("b")
    ranked.ranked.send("c")

    # Then the queue counts all three as pending
    assert tm.queue_stats("ranked").pending == 3

    # When the queue is flushed
    broker = tm.broker
    assert isinstance(broker, AuryRedisBroker)
    broker.flush("ranked")

    # Then nothing waits any more, with or without a priority
    assert tm.queue_stats("ranked").pending == 0
    assert not redis_client.exists(
        keys.DEFAULT.priority_queue("ranked"), keys.DEFAULT.broker_messages("ranked")
    )


def test_messages_arriving_while_the_threads_are_busy_run_by_the_actors_priority(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # (What Dramatiq's own test_actors_can_prioritize_work checks, on our broker: Dramatiq's actor
    # priority orders the messages a worker has fetched, lower numbers first.)
    # Given a worker with one thread and room for 20 messages, its threads paused
    broker = AuryRedisBroker(url=redis_url, middleware=[], namespace=keys.DEFAULT.prefix,
                             maintenance_interval=60)  # fmt: skip
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.queue_prefetch = 20
    calls: list[str] = []
    try:
        worker.start()
        worker.pause()

        # ... and two Dramatiq actors of different priorities, declared now (so their queue's
        # consumer starts, unpaused, while the worker thread is paused)
        @dramatiq.actor(broker=broker, queue_name="prioritized", priority=0)
        def hi() -> None:
            calls.append("hi")

        @dramatiq.actor(broker=broker, queue_name="prioritized", priority=10)
        def lo() -> None:
            calls.append("lo")

        # When ten messages of each are sent, in turn
        for _ in range(10):
            lo.send()
            hi.send()

        # Then the consumer fetches every one as it arrives (its window has room) ...
        fetched = keys.DEFAULT.broker_fetched(broker.broker_id, "prioritized")
        wait_until(lambda: redis_client.scard(fetched) == 20, timeout=10, what="the 20 messages fetched")

        # ... and once the thread resumes, the higher priority ones run first
        worker.resume()
        broker.join("prioritized")
        worker.join()
        assert calls == ["hi"] * 10 + ["lo"] * 10
    finally:
        worker.stop()
        broker.close()
