"""Scenarios 1 to 4, 11 and 13: workers that are killed, stopped, or killed by their own tasks.

Delivery is at-least-once: a task whose worker died before acknowledging it runs again (a
duplicate execution, counted), but no task is ever lost.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from aury_tasks import TaskManager, TaskStatus
from aury_tasks.core import keys

from .conftest import HEARTBEAT_TIMEOUT, QUEUE, StartWorker
from .harness import Figures, Tally, done_count, wait_for

#: Seconds between maintenance passes of a worker with the suite's heartbeat timeout (max(1, 2/3)).
TICK = 1.0
#: What a recovery may take beyond the documented bound: a new worker starting on a busy machine.
STARTUP_SLACK = 15.0


def send_work(producer: TaskManager, prefix: str, count: int, seconds: float = 0.0) -> list[str]:
    """Send ``count`` ``work`` tasks tagged ``prefix-N``; return the tags."""
    work = producer.get_task("work")
    tags = [f"{prefix}-{n}" for n in range(count)]
    for tag in tags:
        work.send(tag, seconds)
    return tags


def queue_is_empty(client: redis.Redis) -> bool:
    """No message waits in the queue or is held unacknowledged by a worker."""
    return (
        client.llen(keys.DEFAULT.broker_queue(QUEUE)) == 0
        and client.hlen(keys.DEFAULT.broker_messages(QUEUE)) == 0
    )


@pytest.mark.scenario("1. baseline: 10,000 tasks, no fault")
def test_baseline_10000_tasks_all_complete_once(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    # Given a worker of 8 threads
    start_worker("-c", "8")

    # When 10,000 tasks are sent
    started = time.monotonic()
    tags = send_work(producer, "base", 10_000)

    # Then every one completes, once
    wait_for(lambda: done_count(client) >= 10_000, timeout=180, what="10,000 tasks", every=0.2)
    figures.extra["seconds"] = round(time.monotonic() - started, 1)
    wait_for(lambda: queue_is_empty(client), timeout=20, what="every ack")
    tally = Tally.read(client, tags)
    figures.add(tally)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicates == 0


@pytest.mark.scenario("2. SIGKILL of a worker process mid-task")
def test_a_killed_worker_process_s_task_comes_back_within_the_heartbeat_timeout(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    # Given a worker (2 processes) running a long task among 200 short ones
    worker = start_worker("-p", "2", "-c", "4")
    long_task = producer.get_task("long_first").send("long", 60)
    tags = send_work(producer, "short", 200, 0.01)
    wait_for(lambda: client.hget("rel:started", "long"), timeout=20, what="the long task to start")
    record = wait_for(
        lambda: (r := producer.task_record(long_task.id)).worker and r, timeout=10, what="its worker"
    )

    # When the worker process running it is killed (SIGKILL: no chance to give anything back)
    pid = int(record.worker.rsplit(":", 1)[1])
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    # Then aum worker exits non-zero, so that a supervisor restarts it
    assert worker.wait(60) != 0
    # ... and once restarted, the long task runs again, after at most the heartbeat timeout and a tick
    start_worker("-p", "2", "-c", "4")
    assert long_task.get_result(timeout=60) == "long"
    figures.recovery_s = round(time.monotonic() - killed_at, 2)
    wait_for(lambda: done_count(client) >= 201, timeout=60, what="every short task")
    tally = Tally.read(client, [*tags, "long"])
    figures.add(tally)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert figures.recovery_s < HEARTBEAT_TIMEOUT + TICK + STARTUP_SLACK


@pytest.mark.scenario("3. SIGKILL of the whole worker tree, 1,000 queued")
def test_a_killed_worker_tree_loses_none_of_1000_tasks(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    # Given 1,000 tasks and a worker busy with them
    tags = send_work(producer, "tree", 1_000, 0.01)
    worker = start_worker("-p", "2", "-c", "4")
    wait_for(lambda: done_count(client) >= 100, timeout=60, what="100 tasks")

    # When aum worker and its processes are all killed at once
    worker.signal_group(signal.SIGKILL)
    killed_at = time.monotonic()
    assert worker.wait(20) == -signal.SIGKILL
    figures.extra["done_before_kill"] = done_count(client)

    # Then a new worker completes every task: those it held come back after the heartbeat timeout
    start_worker("-p", "2", "-c", "4")
    wait_for(lambda: done_count(client) >= 1_000, timeout=120, what="1,000 tasks")
    figures.recovery_s = round(time.monotonic() - killed_at, 2)
    tally = Tally.read(client, tags)
    figures.add(tally)
    assert tally.lost == 0, tally.lost_tags[:20]
    wait_for(lambda: queue_is_empty(client), timeout=20, what="every ack")


@pytest.mark.scenario("4. SIGTERM with running and prefetched tasks")
def test_sigterm_finishes_running_tasks_and_gives_prefetched_ones_back_at_once(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    # Given a worker of 2 threads running 2 long tasks, with more tasks prefetched behind them
    worker = start_worker("-c", "2")
    running = send_work(producer, "running", 2, 3.0)
    waiting = send_work(producer, "waiting", 50)
    wait_for(lambda: client.hlen("rel:started") >= 2, timeout=20, what="the long tasks to start")
    assert client.hlen("rel:done") == 0

    # When it gets SIGTERM
    worker.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()

    # Then the running tasks finish, and it exits 0
    assert worker.wait(60) == 0
    assert all(client.hget("rel:done", tag) == "1" for tag in running)
    # ... having given back every message it held: none waits for a heartbeat timeout
    held = client.hlen(keys.DEFAULT.broker_messages(QUEUE))
    assert client.llen(keys.DEFAULT.broker_queue(QUEUE)) == held == 50 - client.hlen("rel:done") + 2

    # And a new worker runs the rest, each once
    start_worker("-c", "2")
    wait_for(lambda: done_count(client) >= 52, timeout=60, what="every task")
    figures.recovery_s = round(time.monotonic() - stopped_at, 2)
    tally = Tally.read(client, [*running, *waiting])
    figures.add(tally)
    assert tally.lost == 0 and tally.duplicates == 0


@pytest.mark.scenario("11. a task that SIGKILLs its own process every run")
def test_a_task_that_kills_its_worker_every_time_is_dead_lettered_and_the_rest_run(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    # Given a task that kills its worker process each run (limit 3 deliveries), among 100 good ones
    env = {"TASK_MAX_DELIVERIES": "3"}
    killer = producer.get_task("kills_itself").send("killer")
    tags = send_work(producer, "good", 100, 0.01)

    # When workers are restarted each time they die (as a supervisor would)
    first_death = None
    restarts = 0
    while killer.status() is not TaskStatus.DEAD and restarts < 8:
        worker = start_worker("-c", "4", env=env, ready=False)
        while worker.process.poll() is None and killer.status() is not TaskStatus.DEAD:
            time.sleep(0.05)
        if worker.process.poll() is not None:
            restarts += 1
            first_death = first_death or time.monotonic()

    # Then it ran exactly 3 times and is dead, with the reason; every good task completed
    assert killer.status() is TaskStatus.DEAD
    assert client.hget("rel:started", "killer") == "3"
    assert producer.task_record(killer.id).reason == "redelivery_limit: 3 deliveries all killed their worker"
    last = start_worker("-c", "4", env=env)
    try:
        wait_for(lambda: done_count(client) >= 100, timeout=60, what="the good tasks")
    except AssertionError:
        letters = [(x.args, x.status, x.error_message) for x in producer.dead_letters(QUEUE).list()]
        raise AssertionError(
            f"done {done_count(client)}, queued {client.llen(keys.DEFAULT.broker_queue(QUEUE))}, held "
            f"{client.hlen(keys.DEFAULT.broker_messages(QUEUE))}, dead letters {letters}; "
            f"{last.output()[-3000:]}"
        ) from None
    figures.recovery_s = round(time.monotonic() - (first_death or time.monotonic()), 2)
    figures.extra["worker_deaths"] = restarts
    tally = Tally.read(client, [*tags, "killer"], dead_tags=["killer"])
    figures.add(tally)
    assert tally.lost == 0, tally.lost_tags[:20]


@pytest.mark.scenario("13. idempotent task redelivered after a kill")
def test_an_idempotent_task_done_before_its_worker_died_is_not_run_again(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    # Given 100 idempotent charges and a worker (1 thread) killed right after its 20th succeeded,
    # before that message was acknowledged
    charge = producer.get_task("charge")
    handles = {f"order-{n}": charge.send(f"order-{n}") for n in range(100)}
    worker = start_worker("-c", "1", env={"REL_DIE_AFTER_CHARGES": "20"}, ready=False)
    assert worker.wait(60) != 0
    killed_at = time.monotonic()
    assert client.hlen("rel:effects") == 20

    # When a new worker takes over (the dead one's messages come back after the heartbeat timeout)
    start_worker("-c", "4")
    wait_for(
        lambda: all(h.status() is TaskStatus.SUCCESS for h in handles.values()),
        timeout=60,
        what="every charge",
    )
    figures.recovery_s = round(time.monotonic() - killed_at, 2)

    # Then every order was charged exactly once: the redelivered 20th was acknowledged without running
    effects = {tag: int(n) for tag, n in client.hgetall("rel:effects").items()}
    assert effects == {tag: 1 for tag in handles}
    skipped = [h for h in handles.values() if (producer.task_record(h.id).reason or "").startswith("not run")]
    assert len(skipped) == 1
    tally = Tally.read(client, list(handles))
    figures.add(tally)
    figures.extra["redelivered_and_skipped"] = len(skipped)
    assert tally.lost == 0 and tally.duplicates == 0
