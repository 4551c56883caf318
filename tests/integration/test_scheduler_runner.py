"""Scheduler processes: one leader fires, each tick is sent once, changes apply at once, takeover works.

Two runners in this process stand for two ``aum scheduler`` processes (each with its own lease
holder id, APScheduler and threads) on one real Redis; the tasks they send are counted in the
ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest
import redis

from aury_tasks import TaskManager
from aury_tasks.core import keys
from aury_tasks.scheduler.manager import SchedulerManager
from aury_tasks.scheduler.runner import SchedulerRunner

from .events import wait_until

ECHO = "sample_modules.jobs.tasks.echo"


@pytest.fixture
def scheduler(producer: TaskManager) -> Iterator[SchedulerManager]:
    SchedulerManager.reset_instance()
    yield SchedulerManager.get_instance()
    SchedulerManager.reset_instance()


@pytest.fixture
def runners(scheduler: SchedulerManager) -> Iterator[Callable[[], SchedulerRunner]]:
    started: list[SchedulerRunner] = []

    def start() -> SchedulerRunner:
        runner = SchedulerRunner(scheduler, lease_ttl=1.5, renew_interval=0.3)
        runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


def sent(producer: TaskManager) -> list[str]:
    """Ids of the tasks the scheduler sent so far."""
    return [record.id for record in producer.list_tasks(task_name=ECHO, page_size=1000).items]


def claims(client: redis.Redis, job_id: str) -> int:
    """Fires claimed for ``job_id`` (a test may scan; the toolkit never does)."""
    return sum(1 for _ in client.scan_iter(match=keys.DEFAULT.scheduler_fire(job_id, 0)[:-1] + "*"))


def test_one_of_two_schedulers_leads_and_each_tick_is_sent_once(
    scheduler: SchedulerManager, producer: TaskManager, runners, redis_client: redis.Redis
) -> None:
    # Given a job every second, and two scheduler processes
    scheduler.add_job(producer.get_task("echo").send, interval=1, id="tick", args=["tick"])
    first, second = runners(), runners()

    # When they have run for a few ticks
    wait_until(lambda: len(sent(producer)) >= 4, timeout=15, what="four ticks")

    # Then exactly one leads, and every tick was sent once: one task per claimed fire
    assert [first.is_leader, second.is_leader].count(True) == 1
    assert scheduler.store.leader() in (first.holder, second.holder)
    tasks = sent(producer)
    assert len(tasks) == claims(redis_client, "tick") == len(set(tasks))
    [info] = scheduler.list_jobs()
    assert info.last_run is not None and info.last_run.task_id in tasks
    assert producer.task_record(tasks[0]).metadata == {"scheduled_job": "tick"}


def test_when_the_leader_stops_the_other_takes_over_without_a_doubled_tick(
    scheduler: SchedulerManager, producer: TaskManager, runners, redis_client: redis.Redis
) -> None:
    # Given two schedulers and a job every second, fired by the leader
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["x"])
    first, second = runners(), runners()
    leader = wait_until(lambda: next((r for r in (first, second) if r.is_leader), None), timeout=5,
                        what="a leader")  # fmt: skip
    follower = second if leader is first else first
    wait_until(lambda: len(sent(producer)) >= 2, timeout=10, what="two ticks")

    # When the leader stops
    leader.stop()

    # Then the other leads within the lease time, and ticks go on, none sent twice
    wait_until(lambda: follower.is_leader, timeout=5, what="the takeover")
    before = len(sent(producer))
    wait_until(lambda: len(sent(producer)) >= before + 2, timeout=10, what="ticks after the takeover")
    tasks = sent(producer)
    assert len(tasks) == claims(redis_client, "tick")


def test_a_change_from_another_process_applies_at_once(
    scheduler: SchedulerManager, producer: TaskManager, runners
) -> None:
    # Given a leading scheduler firing a job every second
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["x"])
    runner = runners()
    wait_until(lambda: len(sent(producer)) >= 1, timeout=10, what="a first tick")

    # When another process pauses the job
    other = SchedulerManager("other")
    other._store = scheduler.store  # the same Redis, as another process would use
    other.pause_job("tick")

    # Then no tick follows
    wait_until(lambda: not runner.scheduler.get_jobs(), timeout=3, what="the job to be unloaded")
    paused_at = len(sent(producer))

    time.sleep(2.2)
    assert len(sent(producer)) == paused_at

    # When it is resumed, it fires again
    other.resume_job("tick")
    wait_until(lambda: len(sent(producer)) > paused_at, timeout=5, what="a tick after resume")


def test_jobs_declared_in_code_are_written_when_a_scheduler_starts(
    scheduler: SchedulerManager, producer: TaskManager, runners
) -> None:
    # Given a job declared in code and, in Redis, the same job paused by an operator
    echo = producer.get_task("echo")
    scheduler.scheduled_task(cron="0 3 * * *", id="nightly", args=["n"])(echo)
    scheduler.scheduled_task(interval=3600, id="hourly")(echo)
    scheduler.add_job(echo, cron="0 3 * * *", id="nightly", args=["n"], paused=True)

    # When a scheduler starts
    runners()

    # Then the new one is created, and the unchanged one keeps its paused state
    assert scheduler.get_job("hourly").origin == "code"
    assert scheduler.get_job("nightly").paused is True

    # And a deploy that changes the schedule updates it
    scheduler.scheduled_task(cron="0 4 * * *", id="nightly", args=["n"])(echo)
    runners()
    assert scheduler.get_job("nightly").trigger.crontab == "0 4 * * *"


def test_two_schedulers_that_both_believe_they_lead_still_send_each_tick_once(
    scheduler: SchedulerManager, producer: TaskManager, runners, redis_client: redis.Redis
) -> None:
    # Given two schedulers, and the follower made to believe it leads too (a split brain)
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["x"])
    first, second = runners(), runners()
    leader = wait_until(lambda: next((r for r in (first, second) if r.is_leader), None), timeout=5,
                        what="a leader")  # fmt: skip
    follower = second if leader is first else first
    with follower._lock:
        follower._lead()
    assert first.is_leader and second.is_leader

    # When both fire for a few ticks (the follower gives up at its next renewal, so keep it leading)
    follower.lease_ttl = leader.lease_ttl
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        if not follower.is_leader:
            with follower._lock:
                follower._lead()
        time.sleep(0.05)

    # Then each planned tick was claimed once and sent once
    tasks = sent(producer)
    assert len(tasks) >= 3
    assert len(tasks) == claims(redis_client, "tick") == len(set(tasks))


def test_an_update_and_a_removal_apply_to_the_running_leader(
    scheduler: SchedulerManager, producer: TaskManager, runners, redis_client: redis.Redis
) -> None:
    # Given a leading scheduler firing a job every second
    scheduler.add_job(producer.get_task("echo"), interval=1, id="tick", args=["before"])
    runner = runners()
    wait_until(lambda: len(sent(producer)) >= 1, timeout=10, what="a first tick")

    # When the job is changed to other arguments and a daily cron
    scheduler.update_job("tick", cron="0 3 * * *", args=["after"])

    # Then the leader plans it by its new trigger at once: no more ticks this second
    def planned() -> datetime | None:
        job = runner.scheduler.get_job("tick")
        return job.next_run_time if job is not None else None

    wait_until(lambda: (planned() or datetime.now(timezone.utc)).hour == 3, timeout=3, what="the new trigger")
    before = len(sent(producer))
    time.sleep(1.5)
    assert len(sent(producer)) == before

    # And run now sends the new arguments
    handle = scheduler.run_job_now("tick")
    assert producer.task_record(handle.id).task_name == ECHO
    assert claims(redis_client, "tick") == before  # a run now claims no planned tick

    # When it is removed, the leader forgets it at once
    scheduler.remove_job("tick")
    wait_until(lambda: runner.scheduler.get_job("tick") is None, timeout=3, what="the job to be unloaded")


def test_a_job_that_cannot_be_read_never_stops_the_others(
    scheduler: SchedulerManager, producer: TaskManager, runners, redis_client: redis.Redis
) -> None:
    # Given a good job, and a definition in Redis that is not one (written by hand, another version)
    scheduler.add_job(producer.get_task("echo"), interval=1, id="good", args=["g"])
    redis_client.hset(keys.DEFAULT.scheduler_jobs(), "broken", '{"id": "broken", "trigger": {"kind": "cron"')

    # When a scheduler leads, and the broken one is announced as changed
    runner = runners()
    wait_until(lambda: runner.is_leader, timeout=5, what="a leader")
    redis_client.publish(keys.DEFAULT.scheduler_changes(), "put:broken")

    # Then the good job fires, and later changes still apply
    wait_until(lambda: len(sent(producer)) >= 2, timeout=10, what="two ticks of the good job")
    scheduler.pause_job("good")
    wait_until(lambda: runner.scheduler.get_job("good") is None, timeout=3, what="the pause to apply")
    assert sorted(job.id for job in scheduler.store.all()) == ["good"]
