"""Time and the scheduler: clock changes (warned about, and what APScheduler really does), the first
fire still due after a restart or takeover, and the fixed grid of an interval declared in code."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aury_tasks.scheduler.dst import clock_changes, dst_warnings
from aury_tasks.scheduler.jobs import JobDefinition
from aury_tasks.scheduler.runner import first_due
from aury_tasks.scheduler.store import LastRun
from aury_tasks.scheduler.triggers import build_trigger, next_fire_times, trigger_spec

#: Monday 23 November 2026, noon UTC: the next clock changes in Europe are in March and October 2027.
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_the_clock_changes_of_a_zone_are_found_to_the_minute() -> None:
    spring, autumn = clock_changes("Europe/Berlin", now=NOW)

    assert (spring.at, spring.forward, spring.names) == (at("2027-03-28T01:00"), True, ("CET", "CEST"))
    assert (spring.wall_start.time().isoformat(), spring.wall_end.time().isoformat()) == (
        "02:00:00",
        "03:00:00",
    )
    assert (autumn.at, autumn.forward, autumn.names) == (at("2027-10-31T01:00"), False, ("CEST", "CET"))
    assert clock_changes("UTC", now=NOW) == []
    assert clock_changes("Asia/Tokyo", now=NOW) == []
    # A half-hour change, far from Europe's
    [lord_howe_spring] = [c for c in clock_changes("Australia/Lord_Howe", now=NOW) if c.forward][:1]
    assert lord_howe_spring.wall_end - lord_howe_spring.wall_start == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("cron", "zone", "warned"),
    [
        ("30 2 * * *", "Europe/Berlin", 2),  # in the hour that is skipped in March and doubled in October
        ("0 2 * * 0", "Europe/Berlin", 2),  # both changes fall on a Sunday
        ("0 2 * * 1", "Europe/Berlin", 0),  # ... never on a Monday
        ("0 3 * * *", "Europe/Berlin", 0),  # 03:00 exists once on both days
        ("0 1 * * *", "Europe/Berlin", 0),
        ("30 1 * * *", "America/New_York", 1),  # New York skips 02:00-03:00 and repeats 01:00-02:00
        ("30 2 * * *", "America/New_York", 1),
        ("*/15 * * * *", "Europe/Berlin", 0),  # every hour anyway: a clock change is no surprise
        ("30 2 * * *", "UTC", 0),
        ("30 2 * * *", "Asia/Tokyo", 0),
    ],
)
def test_a_cron_in_a_clock_change_is_warned_about(cron: str, zone: str, warned: int) -> None:
    assert len(dst_warnings(trigger_spec(cron=cron, timezone=zone), now=NOW)) == warned


def test_the_warnings_say_what_apscheduler_will_really_do() -> None:
    # Given a daily job at 02:30 in Berlin, as warned about
    spec = trigger_spec(cron="30 2 * * *", timezone="Europe/Berlin")
    skipped, doubled = dst_warnings(spec, now=NOW)
    assert skipped.endswith("on 2027-03-28 the clock jumps from 02:00 CET to 03:00 CEST, so 02:00-03:00 does "
                            "not exist: the 02:30 run happens at 03:30 CEST")  # fmt: skip
    assert doubled.endswith("the 02:30 run happens twice (CEST, then CET)")

    # Then APScheduler's fires around those days are what the warnings say
    def local_fires(start: str) -> list[str]:
        moments = next_fire_times(spec, 3, now=datetime.fromisoformat(start).replace(tzinfo=timezone.utc))
        return [f"{m.astimezone(m.tzinfo):%m-%d %H:%M %Z}" for m in moments]

    spring = [moment.astimezone(timezone.utc) for moment in
              next_fire_times(spec, 3, now=at("2027-03-27T00:00"))]  # fmt: skip
    assert [f"{m:%m-%d %H:%M}" for m in spring] == ["03-27 01:30", "03-28 01:30", "03-29 00:30"]  # UTC
    # 03-28 01:30 UTC is 03:30 CEST: an hour late on the wall clock
    autumn = [moment.astimezone(timezone.utc) for moment in
              next_fire_times(spec, 3, now=at("2027-10-30T12:00"))]  # fmt: skip
    assert [f"{m:%m-%d %H:%M}" for m in autumn] == [
        "10-31 00:30",
        "10-31 01:30",
        "11-01 01:30",
    ]  # twice on 10-31
    assert local_fires("2027-10-30T12:00")[0] == "10-31 02:30 CEST"


def _job(spec_args: dict, updated_at: float) -> JobDefinition:
    spec = trigger_spec(**spec_args)
    return JobDefinition(id="j", task_name="t", queue_name="q", trigger=spec, updated_at=updated_at,
                         created_at=updated_at)  # fmt: skip


def test_the_first_due_fire_follows_the_last_one_sent() -> None:
    # Given a job every 10 s on a grid from 12:00:00, last fired for 12:00:30
    job = _job({"trigger": "interval", "seconds": 10, "start_date": "2026-11-23T12:00:00+00:00"},
               at("2026-11-23T12:00:00").timestamp())  # fmt: skip
    trigger = build_trigger(job.trigger)
    last = LastRun(planned_at=at("2026-11-23T12:00:30").timestamp(), fired_at=0, task_id="x")

    # Then the next one due is 12:00:40, however late it is now (APScheduler applies the grace time)
    assert first_due(trigger, job, last) == at("2026-11-23T12:00:40")
    # And with no fire yet, it is the first on the grid after the job was last changed
    assert first_due(trigger, job, None) == at("2026-11-23T12:00:00")
    changed = _job({"trigger": "interval", "seconds": 10, "start_date": "2026-11-23T12:00:00+00:00"},
                   at("2026-11-23T12:05:01").timestamp())  # fmt: skip
    assert first_due(trigger, changed, last) == at("2026-11-23T12:05:10")


def test_a_one_off_job_is_due_once() -> None:
    job = _job({"run_at": "2026-11-23T12:30:00+00:00"}, at("2026-11-23T12:00:00").timestamp())
    trigger = build_trigger(job.trigger)

    assert first_due(trigger, job, None) == at("2026-11-23T12:30:00")
    fired = LastRun(planned_at=at("2026-11-23T12:30:00").timestamp(), fired_at=0, task_id="x")
    assert first_due(trigger, job, fired) is None
    # run now (before its date) does not use it up
    early = LastRun(planned_at=at("2026-11-23T12:10:00").timestamp(), fired_at=0, task_id="x")
    assert first_due(trigger, job, early) == at("2026-11-23T12:30:00")
    # and a date in the past has no next fire to show
    assert next_fire_times(job.trigger, 1, now=at("2026-11-23T13:00:00")) == []
