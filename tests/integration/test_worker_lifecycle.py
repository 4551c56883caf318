"""``aum worker`` refuses to start on a broken setup, and stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from aury_tasks import TaskManager
from aury_tasks.broker.redis.checks import redis_warnings
from aury_tasks.core import keys

from .events import EventLog, wait_until

#: Task modules ``broken`` (fails to import) and ``fine``.
BROKEN_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "broken_modules"


def test_a_task_module_that_fails_to_import_stops_the_worker(start_worker) -> None:
    # Given a modules directory where one of two task modules fails to import
    # When a worker starts on it
    worker = start_worker(modules=BROKEN_MODULES, ready=False)

    # Then it exits with code 3, naming the module and what went wrong, and never gets ready
    assert worker.wait() == 3
    errors = [line for line in worker.lines if "broken_modules.broken.tasks" in line]
    assert len(errors) == 1, worker.output()
    assert "aury_tasks_fixture_missing_dependency" in errors[0]
    assert "ready for action" not in worker.output()


def test_an_invalid_setting_stops_the_worker_with_one_line(start_worker) -> None:
    # Given TASK_TIMEOUT that is not a number
    # When a worker starts
    worker = start_worker(env={"TASK_TIMEOUT": "abc"}, ready=False)

    # Then it exits with code 2 and one line naming the variable and the bad value
    assert worker.wait() == 2
    assert len(worker.lines) == 1, worker.output()
    assert "TASK_TIMEOUT" in worker.lines[0]
    assert "'abc'" in worker.lines[0]


@pytest.mark.parametrize("to_group", [False, True], ids=["to-aum-worker", "to-process-group"])
def test_sigterm_lets_the_running_task_finish_then_exits_0(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis, to_group: bool
) -> None:
    # Given a worker running a task that takes 1.5 s
    worker = start_worker()
    producer.get_task("slow_once").send("graceful", 1.5)
    events.wait_for(1, "slow_once_start", tag="graceful")

    # When SIGTERM reaches aum worker alone (it forwards it), or its whole process group
    # (as from `timeout`, `kill -- -PGID` or systemd)
    if to_group:
        worker.signal_group(signal.SIGTERM)
    else:
        worker.process.send_signal(signal.SIGTERM)

    # Then it exits with code 0 once the task has finished and been acknowledged
    assert worker.wait() == 0, worker.output()
    assert len(events.all("slow_once_end", tag="graceful")) == 1
    assert redis_client.keys(f"{keys.DEFAULT.prefix}:__acks__.*") == []


def test_a_worker_warns_once_when_its_redis_may_lose_or_evict_messages(
    start_worker, redis_client: redis.Redis
) -> None:
    # Given the test server with persistence off and eviction on (as many a default install is)
    saved = {name: redis_client.config_get(name)[name] for name in ("appendonly", "maxmemory-policy")}
    assert redis_warnings(redis_client) == []  # the embedded server is set up right
    try:
        redis_client.config_set("appendonly", "no")
        redis_client.config_set("maxmemory-policy", "allkeys-lru")
        assert len(redis_warnings(redis_client)) == 2

        # When a worker with two processes starts
        worker = start_worker("-q", "fixture", "-p", "2")
        worker.wait_for_line("WorkerProcess(1)")

        # Then it says so once each, with what to set
        lines = worker.output().splitlines()
        [aof] = [line for line in lines if "appendonly no" in line]
        assert aof.endswith("since its last snapshot are lost; set appendonly yes")
        assert len([line for line in lines if "maxmemory-policy allkeys-lru" in line]) == 1
    finally:
        for name, value in saved.items():
            redis_client.config_set(name, value)


def test_sigterm_gives_prefetched_and_delayed_messages_back_at_once_and_loses_none(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a one-thread worker busy with a 1 s task, holding prefetched messages and a delayed one
    runs = producer.get_task("runs")
    worker = start_worker("-q", "fixture", "-c", "1")
    runs.send("busy", 1.0)
    events.wait_for(1, "runs", tag="busy")
    waiting = [runs.send(f"waiting-{i}") for i in range(6)]
    later = runs.send_with_options(args=("later",), delay=60_000)
    held = f"{keys.DEFAULT.prefix}:__acks__.*"
    wait_until(lambda: any(redis_client.scard(key) for key in redis_client.scan_iter(match=held)), timeout=5,
               what="the worker to prefetch")  # fmt: skip

    # When it gets SIGTERM
    worker.process.send_signal(signal.SIGTERM)

    # Then it exits 0 after the running task, and at once nothing is held any more: every message
    # not run is back in its queue (the delayed one in the delay queue), with no heartbeat to wait for
    assert worker.wait() == 0, worker.output()
    assert [key for key in redis_client.scan_iter(match=held) if redis_client.scard(key)] == []
    ran_before_stop = [event["tag"] for event in events.all("runs") if event["tag"].startswith("waiting-")]
    assert redis_client.llen(keys.DEFAULT.broker_queue("fixture")) + len(ran_before_stop) == len(waiting)
    assert redis_client.llen(keys.DEFAULT.broker_queue(keys.delay_queue_name("fixture"))) == 1

    # And a new worker runs every one of them exactly once (the delayed one stays delayed)
    start_worker("-q", "fixture")
    events.wait_for(7, "runs", timeout=20)
    tags = [event["tag"] for event in events.all("runs")]
    assert sorted(tags) == sorted(["busy", *[f"waiting-{i}" for i in range(6)]])
    assert later.status().value == "scheduled"
