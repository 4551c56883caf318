"""Daylight saving time and cron: find the runs a clock change moves or doubles, to warn about them.

A cron job in a timezone with daylight saving time meets two days a year where the wall clock
is not simple. When the clock jumps forward (02:00 → 03:00) the skipped times do not exist, and
APScheduler runs a job planned for 02:30 at 03:30, an hour late. When it falls back
(03:00 → 02:00) the repeated times happen twice, and a job planned for 02:30 runs twice. Cron
daemons behave differently (most run such a job once), so the user is told.

The check uses a trick: the same trigger in UTC matches wall-clock times with no clock changes,
so "does the job fire between 02:00 and 03:00 on that day" is one question to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from .triggers import TriggerSpec, build_trigger

#: How far ahead clock changes are looked for.
HORIZON = timedelta(days=400)


@dataclass(frozen=True)
class ClockChange:
    """A daylight saving time change: the UTC instant, and the local wall-clock hour it affects."""

    #: When the offset changes (UTC).
    at: datetime
    #: The local wall-clock time where the affected span starts (naive).
    wall_start: datetime
    #: The local wall-clock time where it ends (naive).
    wall_end: datetime
    #: ``True``: the clock jumps forward (a gap); ``False``: it falls back (an overlap).
    forward: bool
    #: The zone's abbreviations before and after, e.g. ``CET`` and ``CEST``.
    names: tuple[str, str]


def clock_changes(
    zone_name: str, *, now: datetime | None = None, horizon: timedelta = HORIZON
) -> list[ClockChange]:
    """The clock changes of ``zone_name`` from ``now`` for ``horizon`` (none for UTC)."""
    zone = ZoneInfo(zone_name)
    start = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(second=0, microsecond=0)
    changes: list[ClockChange] = []
    day = timedelta(days=1)
    moment = start
    while moment < start + horizon:
        later = moment + day
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            changes.append(_change_between(zone, moment, later))
        moment = later
    return changes


def dst_warnings(spec: TriggerSpec, *, now: datetime | None = None) -> list[str]:
    """What a clock change will do to ``spec``'s runs in the next year, one sentence each."""
    if spec.kind != "cron" or spec.timezone.upper() == "UTC" or str(spec.fields.get("hour", "*")) == "*":
        return []  # a job that runs every hour runs every hour of real time, clock change or not
    wall_clock = build_trigger(replace(spec, timezone="UTC"))
    warnings = []
    for change in clock_changes(spec.timezone, now=now):
        start = change.wall_start.replace(tzinfo=timezone.utc)
        planned = wall_clock.get_next_fire_time(None, start)
        if planned is None or planned >= change.wall_end.replace(tzinfo=timezone.utc):
            continue
        span = f"{change.wall_start:%H:%M}-{change.wall_end:%H:%M}"
        when = f"{spec.describe()}: on {change.at:%Y-%m-%d}"
        if change.forward:
            shift = change.wall_end - change.wall_start
            warnings.append(
                f"{when} the clock jumps from {change.wall_start:%H:%M} {change.names[0]} to "
                f"{change.wall_end:%H:%M} {change.names[1]}, so {span} does not exist: the "
                f"{planned:%H:%M} run happens at {planned + shift:%H:%M} {change.names[1]}"
            )
        else:
            warnings.append(
                f"{when} the clock falls back from {change.wall_end:%H:%M} {change.names[0]} to "
                f"{change.wall_start:%H:%M} {change.names[1]}, so {span} happens twice: the "
                f"{planned:%H:%M} run happens twice ({change.names[0]}, then {change.names[1]})"
            )
    return warnings


def _change_between(zone: ZoneInfo, before: datetime, after: datetime) -> ClockChange:
    """The clock change between two UTC instants a day apart, found to the minute."""
    low, high = before, after  # offset(low) is the old one, offset(high) the new one
    old = low.astimezone(zone).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle <= low:
            middle = low + timedelta(minutes=1)
        if middle.astimezone(zone).utcoffset() == old:
            low = middle
        else:
            high = middle
    at = high
    old_offset = low.astimezone(zone).utcoffset() or timedelta(0)
    new_offset = at.astimezone(zone).utcoffset() or timedelta(0)
    wall_old = (at + old_offset).replace(tzinfo=None)  # the wall clock just before the change
    wall_new = (at + new_offset).replace(tzinfo=None)  # and just after it
    names = (low.astimezone(zone).tzname() or "", at.astimezone(zone).tzname() or "")
    forward = new_offset > old_offset
    start, end = (wall_old, wall_new) if forward else (wall_new, wall_old)
    return ClockChange(at=at, wall_start=start, wall_end=end, forward=forward, names=names)
