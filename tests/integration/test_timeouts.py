"""Time limits interrupt sync tasks and cancel async ones."""

from __future__ import annotations

import redis

from aury_tasks import TaskManager

from .events import EventLog, wait_dead_lettered

#: Long enough that only the 1 s time limit of the fixture tasks can end them in time.
TASK_SECONDS = 10
#: How long a test waits for the time limit (1 s, checked every 1 s) to end the task.
LIMIT_WAIT = 6


def test_a_sync_task_over_its_time_limit_is_interrupted(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker, and a sync task with a 1 s limit and no retries
    worker = start_worker()
    sleeps_sync = producer.get_task("sleeps_sync")
    assert sleeps_sync.timeout == 1

    # When it is sent to run for 10 s
    handle = sleeps_sync.send(TASK_SECONDS, "sync")

    # Then it starts, is interrupted long before it would end, and fails without reaching its end
    events.wait_for(1, "sleeps_sync_start", tag="sync")
    wait_dead_lettered(redis_client, handle, timeout=LIMIT_WAIT)
    worker.wait_for_line("TimeLimitExceeded")
    assert events.all("sleeps_sync_end") == []


def test_an_async_task_over_its_time_limit_is_cancelled(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker, and an async task with a 1 s limit and no retries
    start_worker()
    sleeps_async = producer.get_task("sleeps_async")
    assert sleeps_async.is_async
    assert sleeps_async.timeout == 1

    # When it is sent to run for 10 s
    handle = sleeps_async.send(TASK_SECONDS, "async")

    # Then its coroutine is cancelled at the limit, and it fails without reaching its end
    (started,) = events.wait_for(1, "sleeps_async_start", tag="async")
    (cancelled,) = events.wait_for(1, "sleeps_async_cancelled", tag="async", timeout=LIMIT_WAIT)
    assert 0.9 <= cancelled["at"] - started["at"] < LIMIT_WAIT
    wait_dead_lettered(redis_client, handle, timeout=LIMIT_WAIT)
    assert events.all("sleeps_async_end") == []
