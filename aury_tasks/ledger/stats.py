"""Time-bucketed task statistics: which buckets a window reads, and percentiles from histograms.

Every task that ends is counted, in the same atomic step as its final status write, into a
minute bucket and an hour bucket (for all tasks, its queue and its task name). A bucket holds
counts per status and a histogram of durations on a logarithmic scale (buckets 25 % wide), so a
query over a week reads at most 168 hour and 120 minute hashes however many tasks ran, and the
p50/p95 it reports are within about 12 % of the exact values.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping

from ..core.keys import DEFAULT_RESULT_TTL, MINUTE_BUCKET_TTL, KeySpace
from ..core.status import TaskStatus
from ..redis.plan import Batch, Command, Plan
from .records import Statistics

#: Width of a duration histogram bucket: each is 25 % wider than the one before.
_GROWTH = 1.25
_LOG_GROWTH = math.log(_GROWTH)


def duration_bucket(microseconds: int) -> int:
    """The histogram bucket of a duration given in microseconds."""
    return int(math.log(max(1, microseconds)) / _LOG_GROWTH)


def bucket_midpoint(bucket: int) -> float:
    """A representative duration of ``bucket``, in seconds (its geometric middle)."""
    return _GROWTH ** (bucket + 0.5) / 1_000_000


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The duration (seconds) below which ``fraction`` of the counted tasks fall."""
    count = sum(histogram.values())
    if count == 0:
        return None
    rank = fraction * count
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_midpoint(bucket)
    return bucket_midpoint(max(histogram))


def window_buckets(start: float, end: float, now: float) -> list[tuple[str, int]]:
    """The ``(granularity, bucket)`` pairs that cover ``[start, end)`` (UNIX seconds).

    Whole hours are read from hour buckets and the edges from minute buckets; an edge older
    than the minute buckets' lifetime is widened to its hour.
    """
    first_minute = math.floor(start / 60)
    end_minute = math.ceil(end / 60)
    oldest_minute = math.ceil((now - MINUTE_BUCKET_TTL) / 60) + 60
    if first_minute < oldest_minute:
        first_minute = first_minute // 60 * 60
    if end_minute < oldest_minute:
        end_minute = -(-end_minute // 60) * 60
    first_hour = -(-first_minute // 60)
    end_hour = end_minute // 60
    if first_hour >= end_hour:
        return [("m", minute) for minute in range(first_minute, end_minute)]
    return (
        [("m", minute) for minute in range(first_minute, first_hour * 60)]
        + [("h", hour) for hour in range(first_hour, end_hour)]
        + [("m", minute) for minute in range(end_hour * 60, end_minute)]
    )


def merge_buckets(buckets: Iterable[Mapping[str, str]]) -> tuple[Counter[str], Counter[int]]:
    """Sum bucket hashes into counters and a duration histogram.

    A bucket counts each final status and the sum of durations (``dsum``, µs); ``total`` (tasks
    that ended) and ``dcount`` (tasks with a duration) are derived here, not stored, so a final
    write costs two commands less per bucket.
    """
    counters: Counter[str] = Counter()
    histogram: Counter[int] = Counter()
    for bucket in buckets:
        for name, value in bucket.items():
            if name.startswith("d") and name[1:].isdigit():
                histogram[int(name[1:])] += int(value)
            else:
                counters[name] += int(value)
    counters["total"] = sum(count for name, count in counters.items() if name != "dsum")
    counters["dcount"] = sum(histogram.values())
    return counters, histogram


def statistics_series(
    keys: KeySpace,
    start: float,
    end: float,
    points: int,
    *,
    ttl: float,
    queue_name: str | None,
    task_name: str | None,
) -> Plan[list[Statistics]]:
    """The statistics of ``points`` equal slices of ``[start, end)``, in one round trip.

    Only the part of a slice where buckets can exist is read: from the oldest hour bucket (kept
    the record lifetime ``ttl`` and an hour, at least the default 7 days) to the next minute, so
    a window of decades costs what a window of a week does. With both ``queue_name`` and
    ``task_name``, the task name's counters are used.
    """
    dimension = f"t:{task_name}" if task_name else (f"q:{queue_name}" if queue_name else "")
    now, step = time.time(), (end - start) / points
    oldest, newest = now - max(ttl, DEFAULT_RESULT_TTL) - 3600, now + 60
    slices = [(start + i * step, start + (i + 1) * step) for i in range(points)]
    wanted = [[keys.stats_bucket(granularity, bucket, dimension)
               for granularity, bucket in window_buckets(max(low, oldest), min(high, newest), now)]
              for low, high in slices]  # fmt: skip
    distinct = list(dict.fromkeys(key for slice_keys in wanted for key in slice_keys))
    replies = yield Batch([Command("hgetall", key) for key in distinct])
    read = dict(zip(distinct, replies, strict=True))
    return [_statistics(low, high, *merge_buckets(read[key] for key in slice_keys))
            for (low, high), slice_keys in zip(slices, wanted, strict=True)]  # fmt: skip


def _statistics(start: float, end: float, counters: Counter[str], histogram: Counter[int]) -> Statistics:
    total = counters["total"]
    return Statistics(
        start=start,
        end=end,
        total=total,
        succeeded=counters[TaskStatus.SUCCESS.value],
        failed=counters[TaskStatus.FAILURE.value],
        cancelled=counters[TaskStatus.CANCELLED.value],
        expired=counters[TaskStatus.EXPIRED.value],
        dead=counters[TaskStatus.DEAD.value],
        success_rate=counters[TaskStatus.SUCCESS.value] / total if total else 0.0,
        average_duration=counters["dsum"] / counters["dcount"] / 1_000_000 if counters["dcount"] else None,
        p50_duration=percentile(histogram, 0.50),
        p95_duration=percentile(histogram, 0.95),
    )
