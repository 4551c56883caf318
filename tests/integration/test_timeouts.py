"""Time limits interrupt sync tasks and cancel async ones."""

from __future__ import annotations

import time

import redis
from brokers import on_both_brokers
from prometheus_client.parser import text_string_to_metric_families

from aury_tasks import SchedulerManager, TaskManager
from aury_tasks.alerts.readings import Readings
from aury_tasks.config.alert_rules import AlertRule
from aury_tasks.worker.metrics import render_cluster_metrics

from .events import EventLog, wait_dead_lettered

#: Long enough that only the 1 s time limit of the fixture tasks can end them in time.
TASK_SECONDS = 10
#: How long a test waits for the time limit (1 s, checked every 1 s) to end the task.
LIMIT_WAIT = 6


@on_both_brokers
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


@on_both_brokers
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


def test_attempts_stopped_by_their_time_limit_are_counted_for_alerts_and_metrics(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker that stopped a sync and an async task at their time limit
    start_worker()
    handles = [producer.get_task("sleeps_sync").send(TASK_SECONDS, "count-sync"),
               producer.get_task("sleeps_async").send(TASK_SECONDS, "count-async")]  # fmt: skip
    for handle in handles:
        wait_dead_lettered(redis_client, handle, timeout=LIMIT_WAIT)
    sync_name = producer.get_task("sleeps_sync").name

    # When time_limit rules read them, and /metrics is rendered
    readings = Readings(producer, SchedulerManager.get_instance(producer.name).store)
    now = time.time()

    def value(**target: str) -> float:
        return readings.value(AlertRule(name="t", kind="time_limit", window=600, **target), now)

    body, _ = render_cluster_metrics(producer, SchedulerManager.get_instance(producer.name))
    families = text_string_to_metric_families(body.decode())
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in families for sample in family.samples}  # fmt: skip

    # Then each attempt counts once, by queue, by task and in all
    assert (value(), value(queue="fixture"), value(queue="other"), value(task=sync_name)) == (2, 2, 0, 1)
    assert samples[("aury_tasks_queue_time_limits_last_hour", (("queue", "fixture"),))] == 2
    assert samples[("aury_tasks_task_time_limits_last_hour", (("task", sync_name),))] == 1
