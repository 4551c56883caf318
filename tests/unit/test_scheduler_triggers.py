"""Scheduler triggers: every form add_job accepts, crontabs read as cron reads them, one-line errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aury_tasks.core.errors import SchedulerError
from aury_tasks.scheduler.triggers import TriggerSpec, next_fire_times, trigger_spec, validate_cron

#: Sunday 22 November 2026, 23:50 UTC.
SUNDAY_NIGHT = datetime(2026, 11, 22, 23, 50, tzinfo=timezone.utc)


def fires(expression: str, count: int = 4, zone: str = "UTC") -> list[str]:
    check = validate_cron(expression, count=count, timezone=zone, now=SUNDAY_NIGHT)
    assert check.valid, check.reason
    return [moment.strftime("%a %m-%d %H:%M") for moment in check.next_fire_times]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/15 9-17 * * 1-5", ["Mon 11-23 09:00", "Mon 11-23 09:15", "Mon 11-23 09:30", "Mon 11-23 09:45"]),
        ("0 0 * * 0", ["Sun 11-29 00:00", "Sun 12-06 00:00", "Sun 12-13 00:00", "Sun 12-20 00:00"]),
        ("0 0 * * 7", ["Sun 11-29 00:00", "Sun 12-06 00:00", "Sun 12-13 00:00", "Sun 12-20 00:00"]),
        ("0 12 * * 0-2", ["Mon 11-23 12:00", "Tue 11-24 12:00", "Sun 11-29 12:00", "Mon 11-30 12:00"]),
        ("0 0 * * */2", ["Tue 11-24 00:00", "Thu 11-26 00:00", "Sat 11-28 00:00", "Sun 11-29 00:00"]),
        ("0 0 * * mon-fri", ["Mon 11-23 00:00", "Tue 11-24 00:00", "Wed 11-25 00:00", "Thu 11-26 00:00"]),
        # cron's rule: with both day fields restricted, either one matching fires
        ("0 0 1 * 1", ["Mon 11-23 00:00", "Mon 11-30 00:00", "Tue 12-01 00:00", "Mon 12-07 00:00"]),
    ],
)
def test_a_crontab_fires_when_cron_would(expression: str, expected: list[str]) -> None:
    # Given a five-field crontab (0 and 7 are Sunday, as in cron)
    # When its next fire times are asked for on a Sunday night
    # Then they are cron's
    assert fires(expression) == expected


def test_a_crontab_in_a_local_timezone_fires_at_local_time() -> None:
    # 08:30 in Tokyo (UTC+9) is 23:30 UTC the day before; at 23:50 UTC Sunday it is 08:50 Monday there
    check = validate_cron("30 8 * * *", count=1, timezone="Asia/Tokyo", now=SUNDAY_NIGHT)
    assert check.next_fire_times[0].astimezone(timezone.utc) == datetime(
        2026, 11, 23, 23, 30, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "invalid cron '61 * * * *': minute field '61': the last value (61) is higher than"
                       " the maximum value (59)"),
        ("* 24 * * *", "invalid cron '* 24 * * *': hour field '24': the last value (24) is higher than"
                       " the maximum value (23)"),
        ("* * 0 * *", "invalid cron '* * 0 * *': day field '0': the first value (0) is lower than the"
                      " minimum value (1)"),
        ("* * * 13 *", "invalid cron '* * * 13 *': month field '13': the last value (13) is higher than"
                       " the maximum value (12)"),
        ("* * * * 8", "invalid cron '* * * * 8': day-of-week field '8': days are 0 to 7 (0 and 7 are"
                      " Sunday), a range goes from low to high"),
        ("*/0 * * * *", "invalid cron '*/0 * * * *': minute field '*/0': Increment must be higher than 0"),
        ("* * * *", "invalid cron '* * * *': 4 field(s), expected 5 (minute hour day-of-month month"
                    " day-of-week)"),
        ("0 2 31 2 *", "cron 0 2 31 2 * (UTC) never fires (no such date)"),
    ],
)  # fmt: skip
def test_an_invalid_crontab_names_the_field_that_is_wrong(expression: str, reason: str) -> None:
    check = validate_cron(expression)
    assert (check.valid, check.reason, check.next_fire_times) == (False, reason, [])
    with pytest.raises(SchedulerError) as caught:
        trigger_spec(cron=expression)
    assert caught.value.message == reason


@pytest.mark.parametrize(
    ("arguments", "spec", "text"),
    [
        ({"trigger": "cron", "hour": 2}, TriggerSpec("cron", {"hour": "2"}), "cron hour=2 (UTC)"),
        ({"cron": "0 2 * * *", "timezone": "Europe/Paris"},
         TriggerSpec("cron", {"minute": "0", "hour": "2", "day": "*", "month": "*", "day_of_week": "*"},
                     "Europe/Paris", crontab="0 2 * * *"),
         "cron 0 2 * * * (Europe/Paris)"),
        ({"interval": 5400}, TriggerSpec("interval", {"seconds": 5400.0}), "every 1h30m"),
        ({"interval": timedelta(seconds=1.5)}, TriggerSpec("interval", {"seconds": 1.5}), "every 1.5s"),
        ({"trigger": "interval", "minutes": 5}, TriggerSpec("interval", {"minutes": 5}), "every 5m"),
        ({"run_at": datetime(2027, 1, 1, tzinfo=timezone.utc)},
         TriggerSpec("date", {"run_date": "2027-01-01T00:00:00+00:00"}),
         "once at 2027-01-01T00:00:00+00:00 (UTC)"),
    ],
)  # fmt: skip
def test_every_form_of_add_job_gives_a_json_spec(arguments: dict, spec: TriggerSpec, text: str) -> None:
    made = trigger_spec(**arguments)
    if made.kind == "interval":
        # an interval's grid starts now (to the second), so every process plans the same fires
        start = datetime.fromisoformat(made.fields.pop("start_date"))
        assert abs((datetime.now(tz=timezone.utc) - start).total_seconds()) < 5 and start.microsecond == 0
    assert made == spec
    assert made.describe() == text
    assert TriggerSpec.from_dict(made.to_dict()) == made
    assert TriggerSpec.from_dict(trigger_spec(**arguments).to_dict()).describe() == text


def test_an_interval_fires_every_period() -> None:
    spec = trigger_spec(trigger="interval", seconds=10, start_date="2026-11-22T23:50:00+00:00")
    times = next_fire_times(spec, 3, now=SUNDAY_NIGHT)
    assert [moment - times[0] for moment in times] == [
        timedelta(0),
        timedelta(seconds=10),
        timedelta(seconds=20),
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "give one of trigger='cron'|'interval'|'date' (with its arguments), cron='m h dom mon dow',"
             " interval=SECONDS or run_at=DATETIME; got none"),
        ({"cron": "0 2 * * *", "interval": 5}, "give one of trigger='cron'|'interval'|'date' (with its"
         " arguments), cron='m h dom mon dow', interval=SECONDS or run_at=DATETIME; got cron, interval"),
        ({"trigger": "weekly"}, "unknown trigger 'weekly'; use 'cron', 'interval' or 'date'"),
        ({"trigger": "cron", "hours": 2}, "cron trigger has no argument 'hours'; it takes day, day_of_week,"
         " end_date, hour, minute, month, second, start_date, week, year"),
        ({"cron": "0 2 * * *", "hour": 1}, "cron= takes no trigger arguments; got hour (use"
         " trigger='cron'|'interval'|'date' with APScheduler's arguments instead)"),
        ({"interval": 0}, "interval must be a number of seconds above 0, got 0"),
        ({"run_at": "next tuesday"}, "run_at 'next tuesday' is not an ISO 8601 date and time"),
        ({"interval": 5, "timezone": "Mars/Base"}, "unknown timezone 'Mars/Base'; use an IANA name, e.g."
         " 'Europe/Paris'"),
        ({"trigger": "cron", "hour": "25"}, "invalid cron trigger: hour field '25': the last value (25) is"
         " higher than the maximum value (23)"),
    ],
)  # fmt: skip
def test_a_wrong_trigger_is_one_clear_line(arguments: dict, message: str) -> None:
    with pytest.raises(SchedulerError) as caught:
        trigger_spec(**arguments)
    assert caught.value.message == message
    assert caught.value.exit_code == 2
