"""Times and durations on the command line: read as ``90s``, ``30m``, ``24h``, ``7d``, shown in UTC."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import Any

import click

#: Seconds per duration unit.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_EXAMPLES = "e.g. 90s, 30m, 24h, 7d or 1h30m"


def parse_duration(text: str, *, bare_seconds: bool = False) -> float:
    """Seconds in ``text``: a number and a unit (``s``, ``m``, ``h``, ``d``, ``w``), or several (``1h30m``).

    Parameters:
      bare_seconds: also accept a plain number, as seconds.

    Raises:
      ValueError: with a message that shows the accepted forms.

    >>> parse_duration("1h30m")
    5400.0
    """
    value = text.strip().lower()
    if bare_seconds:
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"{text!r} is not a number of seconds of 0 or more")
            return seconds
    if not value or _PART.sub("", value):
        unit_hint = "a number of seconds or a duration" if bare_seconds else "a duration with a unit"
        raise ValueError(f"{text!r} is not {unit_hint}, {_EXAMPLES}")
    return float(sum(float(number) * UNITS[unit] for number, unit in _PART.findall(value)))


class Duration(click.ParamType):
    """A click parameter for a duration: ``90s``, ``30m``, ``24h``, ``7d``, ``1h30m`` (in seconds).

    With ``bare_seconds`` a plain number counts as seconds too, e.g. ``--wait 30``.
    """

    name = "duration"

    def __init__(self, *, bare_seconds: bool = False) -> None:
        self.bare_seconds = bare_seconds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value), bare_seconds=self.bare_seconds)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Moment(click.ParamType):
    """A click parameter for a moment: a duration ago (``24h``) or a UTC date and time (``2026-11-22T10:00``).

    Converts to UNIX seconds.
    """

    name = "moment"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        try:
            return time.time() - parse_duration(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither a duration ago ({_EXAMPLES}) nor a date and time"
                " (e.g. 2026-11-22 or 2026-11-22T10:00, UTC)",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()


def format_moment(seconds: float | None, *, ago: bool = False) -> str:
    """A UNIX time as ``2026-11-22 12:40:27`` (UTC), with `` (3m ago)`` if ``ago``; ``-`` for none."""
    if seconds is None:
        return "-"
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if not ago:
        return text
    delta = time.time() - seconds
    relative = f"in {format_duration(-delta)}" if delta < 0 else f"{format_duration(delta)} ago"
    return f"{text} UTC ({relative})"


def format_duration(seconds: float | None) -> str:
    """Seconds as short text: ``4.2ms``, ``12.3s``, ``4m05s``, ``2h10m``, ``3d04h``; ``-`` if none."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86_400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86_400}d{whole % 86_400 // 3600:02d}h"
