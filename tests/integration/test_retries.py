"""Retries with exponential backoff, ``retry_on`` and ``PermanentError``, in a real worker."""

from __future__ import annotations

from itertools import pairwise

import redis
from brokers import on_both_brokers

from aury_tasks import TaskManager

from .events import EventLog, wait_dead_lettered

#: ``retry_delay`` of the fixture tasks that fail: the smallest wait before a retry, in seconds.
RETRY_DELAY = 0.2


@on_both_brokers
def test_a_failing_task_is_retried_with_growing_delays(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker, and a task that always fails, with max_retries=2 and retry_delay=0.2
    start_worker()
    always_fails = producer.get_task("always_fails")
    assert always_fails.max_retries == 2

    # When it is sent
    handle = always_fails.send("doomed")

    # Then it runs 1 + max_retries times, then fails for good and is not run again
    wait_dead_lettered(redis_client, handle)
    attempts = events.all("always_fails", tag="doomed")
    assert len(attempts) == 1 + always_fails.max_retries
    # ... after backing off: at least retry_delay, then at least twice that (jitter only adds)
    first_gap = attempts[1]["at"] - attempts[0]["at"]
    second_gap = attempts[2]["at"] - attempts[1]["at"]
    assert first_gap >= RETRY_DELAY
    assert second_gap >= 2 * RETRY_DELAY


@on_both_brokers
def test_retry_on_retries_only_the_listed_errors(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker, and a task with max_retries=3 that retries only on ConnectionError
    start_worker()
    fails_with = producer.get_task("fails_with")

    # When it fails once with a ValueError and once with a ConnectionError
    value_error = fails_with.send("value", "bad-input")
    connection_error = fails_with.send("connection", "flaky")

    # Then the ValueError is not retried
    wait_dead_lettered(redis_client, value_error)
    assert len(events.all("fails_with", tag="bad-input")) == 1
    # ... and the ConnectionError is, max_retries times
    wait_dead_lettered(redis_client, connection_error)
    attempts = events.all("fails_with", tag="flaky")
    assert len(attempts) == 1 + fails_with.max_retries
    assert all(b["at"] - a["at"] >= RETRY_DELAY for a, b in pairwise(attempts))


@on_both_brokers
def test_a_permanent_error_is_not_retried(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker, and a task with max_retries=3 that raises PermanentError
    start_worker()
    permanent = producer.get_task("permanent")
    assert permanent.max_retries == 3

    # When it is sent
    handle = permanent.send("no-hope")

    # Then it fails for good after exactly one attempt
    wait_dead_lettered(redis_client, handle)
    assert len(events.all("permanent", tag="no-hope")) == 1
