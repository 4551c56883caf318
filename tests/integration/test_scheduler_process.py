"""``aum scheduler`` as real processes on a real Redis: on time, exactly once, across kills and restarts.

Jobs are written to Redis by a SchedulerManager in the test (as the CLI or a web app would);
the schedulers are ``python -m aury_tasks.cli scheduler`` subprocesses; what they sent is read
from the fire claims (one per planned tick) and the ledger (one record per task sent).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from aury_tasks import TaskManager
from aury_tasks.core import keys
from aury_tasks.scheduler.manager import SchedulerManager

from .events import EventLog, wait_until

ECHO = "sample_modules.jobs.tasks.echo"
StartScheduler = Callable[..., Any]  # start_scheduler (tests/conftest.py)


@pytest.fixture
def scheduler(producer: TaskManager) -> Iterator[SchedulerManager]:
    SchedulerManager.reset_instance()
    yield SchedulerManager.get_instance()
    SchedulerManager.reset_instance()


def planned_ticks(client: redis.Redis, job_id: str) -> list[int]:
    """The planned times (ms) of the fires claimed for ``job_id``, in order (a test may scan)."""
    prefix = keys.DEFAULT.scheduler_fire(job_id, 0)[:-1]
    return sorted(int(key[len(prefix) :]) for key in client.scan_iter(match=prefix + "*"))


def sent(producer: TaskManager, job_id: str) -> list[str]:
    """Ids of the tasks the schedulers sent for ``job_id``."""
    records = producer.list_tasks(page_size=1000).items
    return [r.id for r in records if (r.metadata or {}).get("scheduled_job") == job_id]


def assert_every_tick_once(
    client: redis.Redis, producer: TaskManager, job_id: str, every_ms: int, schedulers: Any = ()
) -> list[int]:
    """No planned tick was skipped, and each one was sent exactly once; return the ticks.

    ``schedulers``: the processes, whose output a failure shows.
    """
    ticks = planned_ticks(client, job_id)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    outputs = "\n\n".join(process.output() for process in schedulers)
    assert set(gaps) <= {every_ms}, f"ticks skipped or off the grid: {gaps}\n{outputs}"
    tasks = sent(producer, job_id)
    assert len(tasks) == len(set(tasks)) == len(ticks), (
        f"a tick was sent twice, or claimed and not sent\n{outputs}"
    )
    return ticks


def holder_pid(holder: str) -> int:
    """The process id in a lease holder's id (``host:pid:nonce``)."""
    return int(holder.split(":")[-2])


def test_aum_scheduler_sends_a_stored_job_with_its_arguments_and_stops_cleanly(
    scheduler: SchedulerManager, producer: TaskManager, start_worker, start_scheduler: StartScheduler,
    events: EventLog, redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given a job stored in Redis: add(2, y=3) every second, and a worker
    scheduler.add_job(producer.get_task("add").send, interval=1, id="adder", args=[2], kwargs={"y": 3})
    start_worker("-q", "fixture")

    # When a scheduler runs
    process = start_scheduler("--lease-ttl", "2")

    # Then it leads, and the task runs every second with the job's arguments, on time
    process.wait_for_line("leads: 1 job(s)")
    added = events.wait_for(3, "add", timeout=10)
    assert [event["result"] for event in added] == [5, 5, 5]
    assert_every_tick_once(redis_client, producer, "adder", 1000)
    last = scheduler.store.last_run("adder")
    assert last is not None and 0 <= last.fired_at - last.planned_at < 0.5  # the benchmark measures it

    # When it gets SIGTERM, it exits 0 and gives up the lease at once
    process.process.send_signal(signal.SIGTERM)
    assert process.wait() == 0
    assert scheduler.store.leader() is None
    assert "scheduler stopping" in process.output()


def test_a_restarted_scheduler_sends_the_tick_missed_while_it_was_down(
    scheduler: SchedulerManager, producer: TaskManager, start_scheduler: StartScheduler,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given a job every second, fired by a scheduler for a few ticks
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["t"], coalesce=False)
    first = start_scheduler("--lease-ttl", "2")
    wait_until(lambda: len(planned_ticks(redis_client, "tick")) >= 2, timeout=10, what="two ticks")

    # When it is stopped for about three seconds and started again
    first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    stopped = len(planned_ticks(redis_client, "tick"))
    time.sleep(3)
    assert len(planned_ticks(redis_client, "tick")) == stopped
    start_scheduler("--lease-ttl", "2")

    # Then the job is still there, and the ticks planned while it was down are sent too
    caught_up = stopped + 5
    wait_until(lambda: len(planned_ticks(redis_client, "tick")) >= caught_up, timeout=10, what="the catch-up")
    assert_every_tick_once(redis_client, producer, "tick", 1000)


def test_three_schedulers_send_each_of_30_ticks_exactly_once(
    scheduler: SchedulerManager, producer: TaskManager, start_scheduler: StartScheduler,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given three scheduler processes and a job every second
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["t"])
    schedulers = [start_scheduler("--lease-ttl", "2") for _ in range(3)]

    # When 30 ticks have been sent
    wait_until(lambda: len(planned_ticks(redis_client, "tick")) >= 30, timeout=45, what="30 ticks")

    # Then exactly one process led, and each tick went out once, none skipped
    ticks = assert_every_tick_once(redis_client, producer, "tick", 1000, schedulers)
    assert len(ticks) >= 30
    leaders = [p for p in schedulers if any("leads:" in line for line in p.lines)]
    assert len(leaders) == 1, [p.output() for p in schedulers]


def test_kill_9_of_the_leader_another_takes_over_without_a_lost_or_doubled_tick(
    scheduler: SchedulerManager, producer: TaskManager, start_scheduler: StartScheduler,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given three schedulers (short lease) and a job every second, which does not coalesce missed ticks
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["t"], coalesce=False)
    schedulers = [start_scheduler("--lease-ttl", "2") for _ in range(3)]
    wait_until(lambda: len(planned_ticks(redis_client, "tick")) >= 3, timeout=10, what="three ticks")
    leader = scheduler.store.leader()
    assert leader is not None

    # When the leader is killed with SIGKILL (no chance to give the lease up)
    os.kill(holder_pid(leader), signal.SIGKILL)
    killed_at = len(planned_ticks(redis_client, "tick"))

    # Then another one leads within a few seconds
    def new_leader() -> str | None:
        holder = scheduler.store.leader()
        return holder if holder not in (None, leader) else None

    successor = wait_until(new_leader, timeout=6, what="the takeover")
    assert holder_pid(successor) in {p.process.pid for p in schedulers}

    # And the ticks planned while nobody led are sent, and none twice
    wait_until(
        lambda: len(planned_ticks(redis_client, "tick")) >= killed_at + 6, timeout=12, what="more ticks"
    )
    assert_every_tick_once(redis_client, producer, "tick", 1000, schedulers)


def test_cron_and_one_off_jobs_fire_and_a_fired_one_off_job_never_fires_again(
    scheduler: SchedulerManager, producer: TaskManager, start_scheduler: StartScheduler,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given a cron job every 2 seconds (APScheduler's own cron arguments) and a job 2 s from now
    echo = producer.get_task("echo")
    scheduler.add_job(echo, trigger="cron", second="*/2", id="cron", args=["c"])
    scheduler.add_job(echo, run_at=datetime.now(timezone.utc) + timedelta(seconds=2), id="once", args=["o"])

    # When a scheduler runs
    first = start_scheduler("--lease-ttl", "2")

    # Then the cron job fires on even seconds, and the one-off job once
    wait_until(lambda: len(planned_ticks(redis_client, "cron")) >= 2, timeout=10, what="two cron ticks")
    wait_until(lambda: planned_ticks(redis_client, "once"), timeout=10, what="the one-off fire")
    assert all(tick % 2000 == 0 for tick in planned_ticks(redis_client, "cron"))
    assert_every_tick_once(redis_client, producer, "cron", 2000)

    # And after a restart the one-off job, which has fired, does not fire again
    first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    redis_client.delete(
        keys.DEFAULT.scheduler_fire("once", planned_ticks(redis_client, "once")[0])
    )  # claim expired
    second = start_scheduler("--lease-ttl", "2")
    second.wait_for_line("leads:")
    cron_before = len(planned_ticks(redis_client, "cron"))
    wait_until(lambda: len(planned_ticks(redis_client, "cron")) > cron_before, timeout=6, what="a cron tick")
    assert len(sent(producer, "once")) == 1
