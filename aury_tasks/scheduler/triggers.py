"""When a scheduled job fires: trigger specs kept as JSON, checked on the way in, built for APScheduler.

A :class:`TriggerSpec` is what a job stores: the trigger kind (``cron``, ``interval``, ``date``)
and APScheduler's own trigger arguments, never an APScheduler object. :func:`trigger_spec`
reads every form ``add_job`` accepts (``trigger="cron", hour=2``, ``cron="0 2 * * *"``,
``interval=3600``, ``run_at=datetime``) and fails with one line naming what is wrong;
:func:`build_trigger` makes the APScheduler trigger the scheduler runs.

Five-field crontabs are read as cron reads them: day of week 0 and 7 are Sunday. (APScheduler's
own ``CronTrigger.from_crontab`` counts from Monday, so ``0-4`` there would be Monday to
Friday; here it is Sunday to Thursday.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ..core.errors import SchedulerError

#: The fields of a five-field crontab, in order.
CRONTAB_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
#: APScheduler's cron trigger arguments.
CRON_ARGUMENTS = frozenset({"year", "month", "day", "week", "day_of_week", "hour", "minute", "second",
                            "start_date", "end_date"})  # fmt: skip
#: APScheduler's interval trigger arguments.
INTERVAL_ARGUMENTS = frozenset({"weeks", "days", "hours", "minutes", "seconds", "start_date", "end_date"})
#: APScheduler's date trigger argument.
DATE_ARGUMENTS = frozenset({"run_date"})
_ARGUMENTS = {"cron": CRON_ARGUMENTS, "interval": INTERVAL_ARGUMENTS, "date": DATE_ARGUMENTS}
_DATE_FIELDS = frozenset({"start_date", "end_date", "run_date"})
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_APSCHEDULER_PREFIX = re.compile(r"^Error validating expression '[^']*': ")


@dataclass(frozen=True)
class TriggerSpec:
    """A trigger as a job stores it: its kind, APScheduler's arguments for it, its timezone.

    Dates are kept as ISO 8601 text, so a spec is plain JSON.
    """

    #: ``cron``, ``interval`` or ``date``.
    kind: str
    #: APScheduler's trigger arguments, e.g. ``{"hour": "2", "minute": "0"}``.
    fields: dict[str, Any] = field(default_factory=dict)
    #: An IANA timezone name, e.g. ``UTC`` or ``Europe/Paris``.
    timezone: str = "UTC"
    #: The crontab the spec was written as, if it was one (shown instead of the fields).
    crontab: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values."""
        data: dict[str, Any] = {"kind": self.kind, "fields": dict(self.fields), "timezone": self.timezone}
        if self.crontab is not None:
            data["crontab"] = self.crontab
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TriggerSpec:
        """The spec :meth:`to_dict` wrote."""
        return cls(data["kind"], dict(data.get("fields") or {}), data.get("timezone", "UTC"),
                   data.get("crontab"))  # fmt: skip

    def describe(self) -> str:
        """The trigger as short text: ``cron 0 2 * * * (UTC)``, ``every 1h30m``, ``once at …``."""
        if self.kind == "cron":
            if self.crontab is not None:
                return f"cron {self.crontab} ({self.timezone})"
            parts = ", ".join(f"{name}={value}" for name, value in self.fields.items())
            return f"cron {parts} ({self.timezone})"
        if self.kind == "interval":
            seconds = timedelta(**{k: v for k, v in self.fields.items() if k not in _DATE_FIELDS})
            return f"every {_duration(seconds.total_seconds())}"
        return f"once at {self.fields['run_date']} ({self.timezone})"


@dataclass(frozen=True)
class CronCheck:
    """What :func:`validate_cron` found."""

    valid: bool
    #: Why not, naming the field (empty when valid).
    reason: str = ""
    #: The next fire times (aware datetimes in the expression's timezone).
    next_fire_times: list[datetime] = field(default_factory=list)
    #: What daylight saving time changes will do to its runs (see :mod:`.dst`).
    warnings: list[str] = field(default_factory=list)


def trigger_spec(
    trigger: str | None = None,
    *,
    cron: str | None = None,
    interval: float | timedelta | None = None,
    run_at: datetime | str | None = None,
    timezone: str | None = None,
    default_timezone: str = "UTC",
    **trigger_args: Any,
) -> TriggerSpec:
    """Read a trigger in any form ``add_job`` accepts into a :class:`TriggerSpec`.

    Exactly one of ``trigger`` (with APScheduler's arguments), ``cron`` (a five-field crontab),
    ``interval`` (seconds) or ``run_at`` is given.

    Raises:
      SchedulerError: naming the argument or crontab field that is wrong.
    """
    zone = _timezone_name(timezone or default_timezone)
    given = [name for name, value in (("trigger", trigger), ("cron", cron), ("interval", interval),
                                      ("run_at", run_at)) if value is not None]  # fmt: skip
    if len(given) != 1:
        raise SchedulerError(
            "give one of trigger='cron'|'interval'|'date' (with its arguments), cron='m h dom mon dow',"
            f" interval=SECONDS or run_at=DATETIME; got {', '.join(given) or 'none'}"
        )
    if cron is not None:
        _no_arguments("cron", trigger_args)
        fields = crontab_fields(cron)
        spec = TriggerSpec("cron", fields, zone, crontab=" ".join(cron.split()))
    elif interval is not None:
        _no_arguments("interval", trigger_args)
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
        if not seconds > 0:
            raise SchedulerError(f"interval must be a number of seconds above 0, got {interval!r}")
        spec = TriggerSpec("interval", {"seconds": seconds, "start_date": _now(zone)}, zone)
    elif run_at is not None:
        _no_arguments("run_at", trigger_args)
        spec = TriggerSpec("date", {"run_date": _iso(run_at, "run_at")}, zone)
    else:
        assert trigger is not None
        if trigger not in _ARGUMENTS:
            raise SchedulerError(f"unknown trigger {trigger!r}; use 'cron', 'interval' or 'date'")
        unknown = sorted(set(trigger_args) - _ARGUMENTS[trigger])
        if unknown:
            raise SchedulerError(
                f"{trigger} trigger has no argument {', '.join(map(repr, unknown))};"
                f" it takes {', '.join(sorted(_ARGUMENTS[trigger]))}"
            )
        fields = {name: _iso(value, name) if name in _DATE_FIELDS else value
                  for name, value in trigger_args.items()}  # fmt: skip
        if trigger == "cron":
            fields = {name: value if name in _DATE_FIELDS else str(value) for name, value in fields.items()}
        if trigger == "interval":
            fields.setdefault("start_date", _now(zone))
        spec = TriggerSpec(trigger, fields, zone)
    build_trigger(spec)  # every remaining mistake surfaces here, once
    if spec.kind == "cron" and not next_fire_times(spec, 1):
        raise SchedulerError(f"{spec.describe()} never fires (no such date)")
    return spec


def build_trigger(spec: TriggerSpec) -> BaseTrigger:
    """The APScheduler trigger for ``spec``.

    Raises:
      SchedulerError: naming the field that is wrong.
    """
    zone = ZoneInfo(spec.timezone)
    if spec.kind == "cron":
        try:
            return _cron_trigger(spec, zone)
        except ValueError as exc:  # find the field to name (cheap triggers first: a scheduler loads many)
            for name, value in spec.fields.items():
                if name not in _DATE_FIELDS:
                    _check_cron_field(name, str(value), spec.crontab)
            raise SchedulerError(f"invalid cron trigger {spec.fields}: {exc}") from None
    try:
        if spec.kind == "interval":
            return IntervalTrigger(timezone=zone, **spec.fields)
        if spec.kind == "date":
            return DateTrigger(timezone=zone, **spec.fields)
    except (TypeError, ValueError) as exc:
        raise SchedulerError(f"invalid {spec.kind} trigger {spec.fields}: {exc}") from None
    raise SchedulerError(f"unknown trigger kind {spec.kind!r}")


def _cron_trigger(spec: TriggerSpec, zone: ZoneInfo) -> BaseTrigger:
    both_days = spec.fields.get("day", "*") != "*" and spec.fields.get("day_of_week", "*") != "*"
    if spec.crontab is not None and both_days:
        # cron fires when EITHER the day of month OR the day of week matches, APScheduler
        # only when both do: ``0 0 1 * 1`` is the 1st of each month and every Monday.
        return OrTrigger([CronTrigger(timezone=zone, **{**spec.fields, "day_of_week": "*"}),
                          CronTrigger(timezone=zone, **{**spec.fields, "day": "*"})])  # fmt: skip
    return CronTrigger(timezone=zone, **spec.fields)


def crontab_fields(expression: str) -> dict[str, str]:
    """The five fields of a crontab as APScheduler's cron arguments (day of week 0/7 = Sunday).

    Raises:
      SchedulerError: for a wrong number of fields.
    """
    parts = expression.split()
    if len(parts) != len(CRONTAB_FIELDS):
        raise SchedulerError(
            f"invalid cron {expression!r}: {len(parts)} field(s), expected 5"
            " (minute hour day-of-month month day-of-week)"
        )
    fields = dict(zip(CRONTAB_FIELDS, parts, strict=True))
    fields["day_of_week"] = _cron_weekdays(expression, fields["day_of_week"])
    return fields


def validate_cron(
    expression: str, *, count: int = 5, timezone: str = "UTC", now: datetime | None = None
) -> CronCheck:
    """Whether ``expression`` is a valid five-field crontab; why not; and its next ``count`` fire times.

    >>> validate_cron("*/15 9-17 * * 1-5").next_fire_times[0]
    datetime.datetime(2026, 11, 23, 9, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """
    try:
        spec = trigger_spec(cron=expression, timezone=timezone)
    except SchedulerError as exc:
        return CronCheck(valid=False, reason=exc.message)
    return CronCheck(valid=True, next_fire_times=next_fire_times(spec, count, now=now))


def next_fire_times(spec: TriggerSpec, count: int, *, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` times ``spec`` fires after ``now`` (default: now)."""
    trigger = build_trigger(spec)
    # In UTC: within one zone Python compares wall-clock times, and the repeated hour of a clock
    # change would compare "earlier" than the moment before it.
    moment = (now or datetime.now(tz=dt_timezone.utc)).astimezone(dt_timezone.utc)
    times: list[datetime] = []
    previous = None
    while len(times) < count:
        fire = trigger.get_next_fire_time(previous, moment)
        if (
            fire is None or fire.astimezone(dt_timezone.utc) < moment
        ):  # a date trigger gives its date, past or not
            break
        times.append(fire)
        previous, moment = fire, fire.astimezone(dt_timezone.utc) + timedelta(microseconds=1)
    return times


def _check_cron_field(name: str, value: str, crontab: str | None) -> None:
    try:
        CronTrigger(**{name: value})
    except ValueError as exc:
        where = f"cron {crontab!r}: " if crontab is not None else "cron trigger: "
        text = _APSCHEDULER_PREFIX.sub("", str(exc))
        raise SchedulerError(f"invalid {where}{name.replace('_', '-')} field {value!r}: {text}") from None


def _cron_weekdays(expression: str, text: str) -> str:
    # cron counts the week from Sunday (0, and 7 again), APScheduler from Monday: numbers become
    # the names of the days they mean (``1-5`` -> ``mon,tue,wed,thu,fri``). Names pass as they are.
    if text == "*":
        return text
    days: list[str] = []
    for item in text.split(","):
        span, slash, step = item.partition("/")
        start, dash, end = ("0", "-", "7") if span == "*" else span.partition("-")
        numeric = start.isdigit() and (end.isdigit() if dash else not slash)
        if not numeric or (slash and not (step.isdigit() and int(step) > 0)):
            days.append(item)  # names, or a mistake APScheduler will name
            continue
        low, high = int(start), int(end) if dash else int(start)
        if high > 7 or low > high:
            raise SchedulerError(
                f"invalid cron {expression!r}: day-of-week field {text!r}: days are 0 to 7 (0 and 7 are"
                " Sunday), a range goes from low to high"
            )
        for number in range(low, high + 1, int(step) if slash else 1):
            if _WEEKDAYS[number] not in days:
                days.append(_WEEKDAYS[number])
    return ",".join(days)


def _no_arguments(form: str, arguments: dict[str, Any]) -> None:
    if arguments:
        raise SchedulerError(
            f"{form}= takes no trigger arguments; got {', '.join(sorted(arguments))}"
            " (use trigger='cron'|'interval'|'date' with APScheduler's arguments instead)"
        )


def _timezone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SchedulerError(f"unknown timezone {name!r}; use an IANA name, e.g. 'Europe/Paris'") from None
    return name


def _iso(value: datetime | str, name: str) -> str:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).isoformat()  # with seconds, as APScheduler reads dates
        except ValueError:
            raise SchedulerError(f"{name} {value!r} is not an ISO 8601 date and time") from None
    if isinstance(value, datetime):
        return value.isoformat()
    raise SchedulerError(f"{name} must be a datetime or ISO 8601 text, got {type(value).__name__}")


def _now(zone: str) -> str:
    # An interval's grid starts at a fixed moment, so every scheduler process plans the same fire
    # times (and the fire claims of two processes can collide as they must).
    return datetime.now(tz=ZoneInfo(zone)).replace(microsecond=0).isoformat()


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)
