"""The Redis server's own cost of a contender's tasks: CPU time and commands, from ``INFO``.

A ``ServerSample`` is one ``INFO cpu stats commandstats`` of the benchmark's private server; the
difference of two is a ``RedisCost``. The harness's own commands in a span are taken out:

* ``INFO`` itself: its calls are dropped from the command counts by name, and the CPU one sample
  costs the server (``Calibration.sample_cpu``, measured on the idle server) is subtracted once
  per span (a span's two samples each fall half in it);
* the harness's polling of queue sizes while a worker drains: its client counts what it sends
  (``CountingRedis``), those calls are dropped by name, and their CPU
  (``Calibration.poll_cpu`` each, measured likewise) is subtracted.

CPU is the server's main thread (``used_cpu_{user,sys}_main_thread``): the thread that runs every
command, the one core a Redis server saturates. The whole process (main thread plus background
threads: AOF fsync, lazy free) is kept as ``cpu_all``; forked children (AOF rewrites, which the
harness runs only between measurements) are left out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

#: Samples (and polls) taken to calibrate the harness's own cost.
CALIBRATION_SAMPLES = 200


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends, by lower-case name (pipelines not counted)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: Counter[str] = Counter()

    @classmethod
    def connect(cls, url: str) -> CountingRedis:
        """A counting client on ``url``."""
        client = cls.from_url(url)
        assert isinstance(client, CountingRedis)
        return client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent[str(args[0]).lower()] += 1
        return super().execute_command(*args, **options)


@dataclass(frozen=True)
class ServerSample:
    """The server's CPU seconds so far and its per-command ``calls`` and ``usec`` so far."""

    cpu_main: float
    cpu_all: float
    calls: dict[str, int]
    usec: dict[str, int]

    @classmethod
    def parse(cls, info: dict[str, Any]) -> ServerSample:
        """From a parsed ``INFO cpu stats commandstats`` reply (redis-py's ``info()``)."""
        stats = {k.removeprefix("cmdstat_"): v for k, v in info.items() if k.startswith("cmdstat_")}
        return cls(
            cpu_main=float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"]),
            cpu_all=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            calls={name: int(s["calls"]) for name, s in stats.items()},
            usec={name: int(s["usec"]) for name, s in stats.items()},
        )


def sample(client: redis.Redis) -> ServerSample:
    """One ``INFO cpu stats commandstats`` of the server ``client`` is connected to."""
    return ServerSample.parse(client.info("cpu", "stats", "commandstats"))


@dataclass
class RedisCost:
    """The server's work over one or more spans: CPU seconds and, per command, calls and usec."""

    cpu_main: float = 0.0
    cpu_all: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    usec: Counter[str] = field(default_factory=Counter)

    @property
    def commands(self) -> int:
        return sum(self.calls.values())

    def add(
        self,
        before: ServerSample,
        after: ServerSample,
        calibration: Calibration,
        harness: Counter[str] | None = None,
    ) -> None:
        """Add the span from ``before`` to ``after``, less ``INFO`` and the ``harness`` commands."""
        harness = harness or Counter()
        polls = sum(harness.values())
        self.cpu_main += (
            after.cpu_main - before.cpu_main - calibration.sample_cpu[0] - polls * calibration.poll_cpu[0]
        )
        self.cpu_all += (
            after.cpu_all - before.cpu_all - calibration.sample_cpu[1] - polls * calibration.poll_cpu[1]
        )
        for name, calls in after.calls.items():
            if name == "info":
                continue
            span_calls = calls - before.calls.get(name, 0)
            span_usec = after.usec[name] - before.usec.get(name, 0)
            own = min(harness.get(name, 0), span_calls)
            if span_calls - own > 0:
                self.calls[name] += span_calls - own
                self.usec[name] += round(span_usec * (span_calls - own) / span_calls)

    def merge(self, other: RedisCost) -> None:
        """Add ``other``'s work to this one's."""
        self.cpu_main += other.cpu_main
        self.cpu_all += other.cpu_all
        self.calls.update(other.calls)
        self.usec.update(other.usec)

    def per_task(self, tasks: int) -> dict[str, float]:
        """Main-thread CPU µs, whole-process CPU µs and commands per task (NaN without tasks)."""
        if tasks <= 0:
            return {"cpu_us": math.nan, "cpu_all_us": math.nan, "commands": math.nan}
        return {
            "cpu_us": self.cpu_main / tasks * 1e6,
            "cpu_all_us": self.cpu_all / tasks * 1e6,
            "commands": self.commands / tasks,
        }


@dataclass(frozen=True)
class Calibration:
    """What the harness costs the server: one ``sample`` and one polling command, CPU seconds
    (main thread, whole process)."""

    sample_cpu: tuple[float, float] = (0.0, 0.0)
    poll_cpu: tuple[float, float] = (0.0, 0.0)


def calibrate(
    client: redis.Redis, poll: Callable[[], object], count: int = CALIBRATION_SAMPLES
) -> Calibration:
    """Measure, on the otherwise idle server, the CPU of one ``sample`` and of one ``poll`` command."""
    first = last = sample(client)
    for _ in range(count):
        last = sample(client)
    sample_cpu = ((last.cpu_main - first.cpu_main) / count, (last.cpu_all - first.cpu_all) / count)
    before = sample(client)
    for _ in range(count):
        poll()
    after = sample(client)
    polls = max(sum(n - before.calls.get(name, 0) for name, n in after.calls.items() if name != "info"), 1)
    poll_cpu = (
        max(after.cpu_main - before.cpu_main - sample_cpu[0], 0.0) / polls,
        max(after.cpu_all - before.cpu_all - sample_cpu[1], 0.0) / polls,
    )
    return Calibration(sample_cpu, poll_cpu)


@dataclass(frozen=True)
class ServerMeter:
    """Samples of the benchmark's server through ``client``, and what the harness's share is."""

    client: redis.Redis
    calibration: Calibration

    def sample(self) -> ServerSample:
        return sample(self.client)

    def span(self, before: ServerSample, harness: Counter[str] | None = None) -> RedisCost:
        """The cost from ``before`` to now, the harness's ``INFO`` and ``harness`` commands taken out."""
        cost = RedisCost()
        cost.add(before, self.sample(), self.calibration, harness)
        return cost


def breakdown(cost: RedisCost, tasks: int, top: int = 8) -> dict[str, list[tuple[str, float, float]]]:
    """The ``top`` commands by calls and by usec: ``(command, calls per task, usec per task)``."""
    rows = [(name, cost.calls[name] / tasks, cost.usec[name] / tasks) for name in cost.calls]
    return {
        "by_calls": sorted(rows, key=lambda row: -row[1])[:top],
        "by_usec": sorted(rows, key=lambda row: -row[2])[:top],
    }


def format_breakdown(cost: RedisCost, tasks: int, label: str, top: int = 8) -> str:
    """The breakdown as text, two small tables side by side in one list of lines."""
    parts = breakdown(cost, tasks, top)
    lines = [
        f"Redis commands a task costs {label}: {cost.commands / tasks:.2f} a task (commandstats; usec: "
        "time inside the command, a script's (evalsha) including the commands it runs, listed too)"
    ]
    lines.append(f"  {'by calls':<28}{'calls':>7}{'usec':>8}     {'by usec':<28}{'calls':>7}{'usec':>8}")
    for (n1, c1, u1), (n2, c2, u2) in zip(parts["by_calls"], parts["by_usec"], strict=False):
        lines.append(f"  {n1:<28}{c1:7.2f}{u1:8.1f}     {n2:<28}{c2:7.2f}{u2:8.1f}")
    return "\n".join(lines)
