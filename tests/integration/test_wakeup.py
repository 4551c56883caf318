"""Idle workers wait for a wake-up instead of polling Redis (see :mod:`aury_tasks.broker.redis.wakeup`).

Each test runs real ``aum worker`` processes on the fixture tasks. A worker is *idle* once its
wake-up thread has subscribed and its consumers found their queues empty (each left its queue's
idle marker); from then on a consumer fetches on its own only every ``IDLE_FETCH_INTERVAL``
(30 s). Every completion below is awaited for well under that, so a test can only pass
if the worker was woken: by a send, a delayed message or a retry coming due, a reconnect, or a
worker found dead.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import redis

from aury_tasks import TaskManager
from aury_tasks.broker.redis.wakeup import IDLE_FETCH_INTERVAL
from aury_tasks.core import keys

from .events import EventLog, wait_until

#: The queue of the fixture tasks, and its delay queue (delayed messages and retries wait there).
QUEUE = "fixture"
DELAY_QUEUE = f"{QUEUE}.DQ"
#: How long a task sent to an idle worker may take at most: far below the fallback fetch.
WOKEN_WITHIN = 10.0
#: A short heartbeat timeout, so a dead worker is noticed in seconds (a beat every 0.67 s).
FAST_HEARTBEAT = {"TASK_HEARTBEAT_TIMEOUT": "2"}
#: Seconds over which an idle worker's Redis commands are counted (a fallback fetch of each consumer
#: included), and the most it may make a second.
IDLE_WINDOW = IDLE_FETCH_INTERVAL + 1
MAX_IDLE_COMMANDS_PER_SECOND = 2.0

assert WOKEN_WITHIN < IDLE_FETCH_INTERVAL / 2


def wake_subscribers(client: redis.Redis) -> int:
    """How many worker processes are subscribed to the wake channels (one pattern subscription each)."""
    return sum(1 for info in client.client_list(_type="pubsub") if int(info.get("psub", 0)) > 0)


def wait_idle(client: redis.Redis, *queues: str, workers: int = 1) -> None:
    """Wait until ``workers`` processes listen for wake-ups and ``queues`` were all found empty."""
    subscribed = f"{workers} wake subscription(s)"
    wait_until(lambda: wake_subscribers(client) >= workers, timeout=15, what=subscribed)
    for queue_name in queues:
        marker = keys.DEFAULT.idle_marker(queue_name)
        wait_until(lambda marker=marker: client.exists(marker), timeout=15, what=f"{marker} to be set")


def command_counts(client: redis.Redis) -> tuple[int, dict[str, int]]:
    """Commands Redis processed so far (those scripts run included), in all and by command.

    One ``INFO`` command, counted in the next reading.
    """
    info: dict[str, Any] = client.info("stats", "commandstats")
    by_command = {name.removeprefix("cmdstat_"): stats["calls"]
                  for name, stats in info.items() if name.startswith("cmdstat_")}  # fmt: skip
    return int(info["total_commands_processed"]), by_command


def test_an_idle_worker_process_makes_at_most_2_redis_commands_a_second(
    start_worker, producer: TaskManager, redis_client: redis.Redis
) -> None:
    # Given the ledger's index trim (a chore of one worker of all, every 5 minutes) taken by
    # another worker, so that what is counted is what every idle worker process costs
    redis_client.set(keys.DEFAULT.maintenance_lock(), "another-worker", ex=300)
    # ... and a worker that ran a task (its start-up is over) and went idle. The window below
    # holds one fallback fetch of each of its consumers (30 s apart), and the moment the test's
    # own sender, in Redis's heartbeats since its send, looks dead (it held no messages: nothing
    # is woken then)
    start_worker("-q", QUEUE)
    wait_idle(redis_client, QUEUE, DELAY_QUEUE)
    assert producer.get_task("runs").send("warm-up").get_result(timeout=WOKEN_WITHIN) == "warm-up"
    wait_idle(redis_client, QUEUE, DELAY_QUEUE)
    # ... and that indexed the ledger records of what it ran (at its next heartbeat)
    wait_until(
        lambda: redis_client.llen(keys.DEFAULT.unindexed()) == 0, timeout=10, what="the index catch-up"
    )

    # When it stays idle for a while
    total_before, before = command_counts(redis_client)
    started = time.monotonic()
    time.sleep(IDLE_WINDOW)  # a window to count commands in, not a wait for something to happen
    total_after, after = command_counts(redis_client)
    elapsed = time.monotonic() - started

    # Then Redis processed at most 2 commands a second for it (the INFO of the first reading aside)
    rate = (total_after - total_before - 1) / elapsed
    made = {name: calls - before.get(name, 0) for name, calls in after.items()}
    made["info"] -= 1
    made = {name: calls for name, calls in made.items() if calls}
    assert rate <= MAX_IDLE_COMMANDS_PER_SECOND, f"{rate:.2f} commands/s over {elapsed:.1f} s: {made}"


def test_a_burst_sent_to_an_idle_worker_wakes_it_once_not_per_message(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given an idle worker with one thread (it holds 2 messages at a time), and a listener on
    # the queue's wake channel
    start_worker("-q", QUEUE, "-c", "1")
    wait_idle(redis_client, QUEUE)
    listener = redis_client.pubsub()
    listener.subscribe(keys.DEFAULT.wake_channel(QUEUE))
    assert listener.get_message(timeout=5)["type"] == "subscribe"

    # When 20 tasks are sent one after the other
    runs = producer.get_task("runs")
    for i in range(20):
        runs.send(f"burst-{i}", 0.05)

    # Then the worker runs them all
    events.wait_for(20, "runs", timeout=WOKEN_WITHIN + 5)
    # ... woken by at least one signal, and far fewer than one a message: the sends that
    # found a consumer busy published nothing
    wakes = 0
    while (message := listener.get_message(timeout=0.2)) is not None:
        wakes += message["type"] == "message"
    listener.close()
    assert 1 <= wakes <= 5


def test_a_worker_that_lost_its_wake_subscription_still_runs_a_task_sent_meanwhile(
    start_worker, producer: TaskManager, redis_client: redis.Redis
) -> None:
    # Given an idle worker
    start_worker("-q", QUEUE)
    wait_idle(redis_client, QUEUE)

    # When its subscription's connection is killed, and with it the signal of the next send
    # (the marker goes as a send whose PUBLISH reached no one would take it)
    killing = redis_client.pipeline(transaction=True)
    killing.client_kill_filter(_type="pubsub")
    killing.delete(keys.DEFAULT.idle_marker(QUEUE))
    killing.execute()
    handle = producer.get_task("runs").send("after-the-loss")

    # Then the task runs all the same, long before the consumer's fallback fetch: the worker
    # subscribes again and wakes its consumers
    assert handle.get_result(timeout=WOKEN_WITHIN) == "after-the-loss"
    wait_until(lambda: wake_subscribers(redis_client) == 1, timeout=5, what="the subscription to be back")


def test_a_delayed_task_sent_to_an_idle_worker_runs_once_due_not_before(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given an idle worker
    start_worker("-q", QUEUE)
    wait_idle(redis_client, QUEUE, DELAY_QUEUE)

    # When a task is sent with a delay of 1.5 s
    handle = producer.get_task("runs").send_with_options(args=("delayed",), delay=1.5)

    # Then it runs, not before its eta
    assert handle.get_result(timeout=WOKEN_WITHIN) == "delayed"
    record = handle.record()
    assert record.eta is not None and record.started_at is not None
    assert record.started_at >= record.eta
    (ran,) = events.all("runs", tag="delayed")
    assert ran["at"] >= record.eta


def test_a_retry_on_an_idle_worker_runs(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given an idle worker
    start_worker("-q", QUEUE)
    wait_idle(redis_client, QUEUE, DELAY_QUEUE)

    # When a task fails its first attempt (retried about 0.5 to 1 s later, through the delay queue)
    handle = producer.get_task("fails_once").send("retried")

    # Then its retry runs and succeeds
    assert handle.get_result(timeout=WOKEN_WITHIN) == "retried retried"
    assert [event["first"] for event in events.all("fails_once", tag="retried")] == [True, False]


def test_a_priority_task_sent_to_an_idle_worker_runs(
    start_worker, producer: TaskManager, redis_client: redis.Redis
) -> None:
    # Given an idle worker
    start_worker("-q", QUEUE)
    wait_idle(redis_client, QUEUE)

    # When a task is sent with a priority (its own enqueue script, to the queue's priority set)
    handle = producer.get_task("runs").send_with_options(args=("urgent",), priority=5)

    # Then it runs
    assert handle.get_result(timeout=WOKEN_WITHIN) == "urgent"
    assert redis_client.exists(keys.DEFAULT.priority_sequence(QUEUE))


def test_an_idle_worker_runs_the_tasks_of_a_worker_killed_mid_run(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker running 3 long tasks
    doomed = start_worker("-q", QUEUE, "-c", "3", env=FAST_HEARTBEAT)
    slow_once = producer.get_task("slow_once")
    tags = [f"held-{i}" for i in range(3)]
    for tag in tags:
        slow_once.send(tag, 60)
    first_runs = events.wait_for(3, "slow_once_start")
    # ... and a second worker, idle on the same queue (it never fetches on its own for 30 s)
    start_worker("-q", QUEUE, env=FAST_HEARTBEAT)
    wait_idle(redis_client, QUEUE, workers=2)

    # When the first worker and its worker processes are killed at once
    doomed.signal_group(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL

    # Then, once its heartbeat is stale, the idle worker notices, takes its tasks and runs them
    ends = events.wait_for(3, "slow_once_end", timeout=WOKEN_WITHIN + 5)
    assert sorted(end["tag"] for end in ends) == tags
    assert {end["pid"] for end in ends}.isdisjoint(run["pid"] for run in first_runs)
