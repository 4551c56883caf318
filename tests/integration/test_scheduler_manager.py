"""SchedulerManager: jobs added, listed, changed and removed from code, kept in Redis as JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from aury_tasks import TaskManager, TaskStatus
from aury_tasks.core.errors import SchedulerError, TaskNotFound
from aury_tasks.scheduler.jobs import JobOptions, tick_idempotency_key
from aury_tasks.scheduler.manager import SchedulerManager
from aury_tasks.scheduler.triggers import TriggerSpec

from .events import EventLog, wait_until

ECHO = "sample_modules.jobs.tasks.echo"


@pytest.fixture
def scheduler(producer: TaskManager) -> Iterator[SchedulerManager]:
    SchedulerManager.reset_instance()
    yield SchedulerManager.get_instance()
    SchedulerManager.reset_instance()


def test_a_job_keeps_its_task_arguments_and_trigger_and_lists_its_next_run(
    scheduler: SchedulerManager, producer: TaskManager
) -> None:
    # Given a task
    echo = producer.get_task("echo")

    # When its .send is scheduled in APScheduler's style
    job = scheduler.add_job(func=echo.send, trigger="cron", hour=2, args=["nightly"], kwargs={})

    # Then the job names the task and its queue, never a function, and is listed with its next run
    assert (job.id, job.task_name, job.queue_name, job.args) == (ECHO, ECHO, "fixture", ["nightly"])
    assert job.trigger == TriggerSpec("cron", {"hour": "2"}, "UTC")
    assert job.options == JobOptions(coalesce=True, max_instances=1, misfire_grace_time=30.0)
    [info] = scheduler.list_jobs()
    assert info.job == job and info.trigger_text == "cron hour=2 (UTC)"
    assert info.next_run is not None and info.next_run > datetime.now(tz=timezone.utc)
    assert (info.next_run.hour, info.next_run.minute, info.next_run.second) == (2, 0, 0)
    assert (info.last_run, info.last_status) == (None, None)


def test_shorthands_and_defaults_from_settings(
    scheduler: SchedulerManager, producer: TaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = producer.get_task("echo")
    every = scheduler.add_job(echo, interval=60, id="every-minute", misfire_grace_time=5, jitter=1)
    weekdays = scheduler.add_job(echo.send, cron="0 8 * * 1-5", id="weekdays", timezone="Europe/Paris")
    once = scheduler.add_job(ECHO, run_at=datetime(2030, 1, 1, tzinfo=timezone.utc), id="once")

    assert every.trigger.describe() == "every 1m" and every.options.misfire_grace_time == 5
    assert every.options.jitter == 1
    assert weekdays.trigger.describe() == "cron 0 8 * * 1-5 (Europe/Paris)"
    assert once.trigger.describe() == "once at 2030-01-01T00:00:00+00:00 (UTC)"
    assert [info.job.id for info in scheduler.list_jobs()] == ["every-minute", "once", "weekdays"]


def test_pause_resume_update_remove_and_clear(scheduler: SchedulerManager, producer: TaskManager) -> None:
    # Given a job
    job = scheduler.add_job(producer.get_task("echo").send, cron="*/5 * * * *", id="poll", args=[1])

    # When it is paused, it has no next run; resumed, it has one again
    assert scheduler.pause_job("poll").paused is True
    assert scheduler.list_jobs()[0].next_run is None
    assert scheduler.resume_job("poll").paused is False
    assert scheduler.list_jobs()[0].next_run is not None

    # When its trigger and arguments are changed, the rest stays
    changed = scheduler.update_job("poll", cron="0 * * * *", args=[2], max_instances=3)
    assert changed.trigger.crontab == "0 * * * *" and changed.args == [2]
    assert changed.options.max_instances == 3 and changed.options.misfire_grace_time == 30
    assert (changed.task_name, changed.created_at) == (job.task_name, job.created_at)
    assert changed.updated_at >= job.updated_at
    assert scheduler.get_job("poll") == changed

    # When it is removed it is gone; removing it again, or an unknown job, is one clear error
    scheduler.remove_job("poll")
    with pytest.raises(SchedulerError, match="no scheduled job 'poll'"):
        scheduler.remove_job("poll")
    with pytest.raises(SchedulerError, match="no scheduled job 'poll'; jobs: none"):
        scheduler.get_job("poll")

    # And clear deletes every job
    scheduler.add_job(ECHO, interval=10, id="a")
    scheduler.add_job(ECHO, interval=10, id="b")
    assert scheduler.clear() == 2 and scheduler.list_jobs() == []


def test_run_now_sends_the_task_and_the_list_shows_how_it_went(
    scheduler: SchedulerManager, producer: TaskManager, start_worker
) -> None:
    # Given a scheduled job and a worker
    start_worker()
    scheduler.add_job(producer.get_task("echo"), cron="0 0 1 1 *", id="yearly", args=["now"])

    # When it is run now
    handle = scheduler.run_job_now("yearly")

    # Then its task runs with the job's arguments, marked as sent by the job
    assert handle.get_result(timeout=20) == "now"
    assert handle.record().metadata == {"scheduled_job": "yearly"}
    [info] = scheduler.list_jobs()
    assert info.last_run is not None and info.last_run.task_id == handle.id
    assert info.last_status is TaskStatus.SUCCESS


def test_a_tick_sent_again_runs_once(
    scheduler: SchedulerManager, producer: TaskManager, start_worker, events: EventLog
) -> None:
    # Given a scheduled job, one of its ticks sent and run
    start_worker()
    scheduler.add_job(producer.get_task("runs"), cron="0 0 1 1 *", id="yearly-runs", args=["tick"])
    job = scheduler.get_job("yearly-runs")
    planned = datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
    first = scheduler.send(job, planned)
    assert first.get_result(timeout=20) == "tick"

    # When the same tick is sent again (as the runner does when a send's reply was lost)
    second = scheduler.send(job, planned)

    # Then the second message is acknowledged without running; its record says which task ran
    wait_until(lambda: second.status() is TaskStatus.SUCCESS, timeout=10, what="the second send to end")
    assert len(events.all("runs", tag="tick")) == 1
    key = tick_idempotency_key("yearly-runs", planned)
    assert (
        producer.task_record(second.id).reason
        == f"not run: idempotency key {key!r} was done by task {first.id}"
    )
    # And the next tick is other work
    assert scheduler.send(job, planned + 365 * 86400).get_result(timeout=20) == "tick"
    assert len(events.all("runs", tag="tick")) == 2


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"cron": "0 25 * * *"}, SchedulerError, "invalid cron '0 25 * * *': hour field '25'"),
        ({"trigger": "cron", "hours": 2}, SchedulerError, "cron trigger has no argument 'hours'"),
        ({"interval": 10, "args": [object()]}, TypeError, "argument 0 of sample_modules.jobs.tasks.echo"),
    ],
)
def test_a_wrong_job_is_refused_with_one_line(
    scheduler: SchedulerManager, producer: TaskManager, arguments: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        scheduler.add_job(producer.get_task("echo").send, **arguments)
    assert scheduler.list_jobs() == []


def test_what_is_not_a_task_is_refused(scheduler: SchedulerManager, producer: TaskManager) -> None:
    with pytest.raises(TaskNotFound, match="unknown task 'ecko'"):
        scheduler.add_job("ecko", interval=10)
    with pytest.raises(SchedulerError, match=r"func must be a task or its \.send"):
        scheduler.add_job(print, interval=10)
    scheduler.add_job(ECHO, interval=10, id="taken")
    with pytest.raises(SchedulerError, match="a job 'taken' exists already"):
        scheduler.add_job(ECHO, interval=20, id="taken", replace_existing=False)
    assert scheduler.get_job("taken").trigger.fields["seconds"] == 10.0


def test_a_schedule_declared_in_code_waits_for_a_scheduler_to_start(
    scheduler: SchedulerManager, producer: TaskManager
) -> None:
    echo = producer.get_task("echo")
    assert scheduler.scheduled_task(cron="0 0 * * *", args=["midnight"])(echo) is echo
    declared = scheduler.declared[ECHO]
    assert (declared.origin, declared.args, declared.trigger.crontab) == ("code", ["midnight"], "0 0 * * *")
    assert scheduler.list_jobs() == []  # written when a scheduler starts, not at import
    with pytest.raises(SchedulerError, match="invalid cron"):
        scheduler.scheduled_task(cron="0 0 * *")
    with pytest.raises(SchedulerError, match=r"goes above @tm\.conditional_task"):
        scheduler.scheduled_task(interval=5)(print)  # type: ignore[arg-type]
