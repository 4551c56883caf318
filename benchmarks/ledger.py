"""The ledger's query targets, measured on one private Redis filled through the real write path.

The store is filled with task records exactly as the ledger middleware writes them: each record
is the ``TRANSITION`` script calls of :class:`~aury_tasks.ledger.redis_ledger.RedisLedger` (pending
with the encoded message, started, then success with a small result or failure with an error and
a traceback; a real worker writes ``started`` only for tasks running over 0.1 s, the final
record is the same), sent in large batches with :func:`~aury_tasks.redis.scripts.run_pipelined` and
given explicit timestamps, so that the finish times spread over the last ~24 h and the
statistics buckets fill as they would. Several queues and task names, a mix of successes and
failures, and a few in-flight tasks (pending, or started with a progress report) on top.

Measured, each as p50/p99/max over repeated calls (milliseconds, ``time.perf_counter``):

* ``handle.status()`` and ``handle.progress()`` on random ids (target p99 < 2 ms);
* ``tm.list_tasks(page_size=50)``: no filter, status, queue, task name, queue and task name,
  status and queue, and a deep page (target < 20 ms). Measured when ``--list-records``
  finished records are stored, and again at ``--records``;
* ``tm.statistics()`` over a 24 h window holding ``--records`` finished tasks (target < 50 ms);
* memory per record: ``INFO memory`` used_memory before and after writing ``--memory-records``
  records of one kind on an empty server, divided by their number (indexes and counters
  included).

The server is the embedded one, started like ``run.py`` does (a free loopback port, a temporary
directory, stopped at the end); its AOF is switched off unless ``--aof`` (reads do not touch
it, and the fill would write gigabytes). Run it from the repository with the project's venv::

    python benchmarks/ledger.py        # 1,000,000 records, about 9 minutes on 2 cores
    python benchmarks/ledger.py --records 100000 --list-records 50000 --json /tmp/ledger.json   # ~2.5 minutes
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import redis
from common import free_port, machine_info, percentile
from redis.utils import HIREDIS_AVAILABLE

import aury_tasks
from aury_tasks import TaskManager, TaskSettings
from aury_tasks.broker.embedded import EmbeddedServer, start_server
from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus
from aury_tasks.ledger.records import Progress
from aury_tasks.ledger.redis_ledger import RedisLedger
from aury_tasks.redis.scripts import Write, run_pipelined
from aury_tasks.tasks.handle import TaskHandle

DAY = 86_400.0
#: Finish times spread over this span, ending a minute before the fill starts.
FILL_SPAN = DAY - 600.0
#: The ``worker`` field real workers write (``host:pid``).
WORKER_NAME = f"{socket.gethostname()}:4242"
#: Calls made before each timed series, not counted.
WARMUP_CALLS = 10
#: Timed calls made of each query however slow it is (see ``--budget``).
MIN_TIMED_CALLS = 10


@dataclass(frozen=True)
class TaskKind:
    """One task of the simulated application: its name, queue, share, failure rate and speed."""

    name: str
    queue: str
    share: float
    failure_rate: float
    median_seconds: float


#: The simulated application: 8 task names on 4 queues.
KINDS: tuple[TaskKind, ...] = (
    TaskKind("modules.emails.tasks.send_welcome_email", "emails", 0.30, 0.02, 0.15),
    TaskKind("modules.emails.tasks.send_digest", "emails", 0.10, 0.05, 0.8),
    TaskKind("modules.billing.tasks.charge_invoice", "billing", 0.10, 0.08, 0.4),
    TaskKind("modules.billing.tasks.refresh_rates", "billing", 0.05, 0.01, 0.05),
    TaskKind("modules.media.tasks.make_thumbnail", "media", 0.25, 0.03, 0.3),
    TaskKind("modules.media.tasks.transcode_video", "media", 0.05, 0.10, 20.0),
    TaskKind("modules.reports.tasks.build_report", "default", 0.10, 0.05, 5.0),
    TaskKind("modules.core.tasks.cleanup_sessions", "default", 0.05, 0.0, 0.02),
)
#: What the filtered queries filter on: the busiest task name and its queue (the worst case).
FILTER_KIND = KINDS[0]


class BenchmarkError(RuntimeError):
    """The run could not be completed, or the store did not hold what was written."""


@dataclass
class Series:
    """Latencies of one query, in milliseconds."""

    key: str
    label: str
    records: int
    target_ms: float | None
    target_stat: str
    samples: list[float] = field(repr=False)

    def stat(self, name: str) -> float:
        """``"max"`` or a percentile such as ``"p99"``."""
        return max(self.samples) if name == "max" else percentile(self.samples, float(name[1:]))

    @property
    def met(self) -> bool | None:
        return None if self.target_ms is None else self.stat(self.target_stat) < self.target_ms

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "records": self.records,
            "target_ms": self.target_ms,
            "target_stat": self.target_stat,
            "p50_ms": self.stat("p50"),
            "p99_ms": self.stat("p99"),
            "max_ms": self.stat("max"),
            "met": self.met,
            "repetitions": len(self.samples),
        }


@dataclass
class MemoryFigure:
    """``used_memory`` growth while writing ``count`` records of one kind on an empty server.

    With where it went: the index sorted sets and the statistics counters (whose number grows
    with minutes, queues and task names, not with records) from ``MEMORY USAGE``; the record
    itself (its hash, key and expiry entry) is the rest.
    """

    kind: str
    count: int
    used_bytes: int
    index_bytes: int
    counter_bytes: int
    note: str

    @property
    def per_record(self) -> float:
        return self.used_bytes / self.count

    def parts(self) -> dict[str, float]:
        """Bytes per record: the record itself, its index entries, its share of the counters."""
        index, counters = self.index_bytes / self.count, self.counter_bytes / self.count
        return {"record": self.per_record - index - counters, "indexes": index, "counters": counters}


@dataclass
class FillReport:
    """How one stretch of the fill went."""

    records: int
    seconds: float
    #: Server time per ledger script call (``INFO commandstats``, microseconds).
    script_us: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else math.nan


# Records as the ledger writes them


@dataclass
class RecordMaker:
    """Builds the ledger writes of simulated tasks, reproducibly from ``seed``.

    Parameters:
      store: the store whose ``transition_write`` and ``progress_write`` make the script calls.
      seed: seed of the random choices (ids, kinds, times, outcomes).
      traceback_text: the traceback stored with each failure.
    """

    store: RedisLedger
    seed: int
    traceback_text: str
    rng: random.Random = field(init=False)
    counter: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._weights = [kind.share for kind in KINDS]

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def pick_kind(self) -> TaskKind:
        return self.rng.choices(KINDS, weights=self._weights)[0]

    def message(self, task_id: str, kind: TaskKind, enqueued_at: float) -> str:
        """The encoded message the pending write carries (as ``riders.fill_message`` puts it)."""
        self.counter += 1
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=kind.queue,
            actor_name=kind.name,
            args=(),
            kwargs={"user_id": str(100_000 + self.counter)},
            options={"redis_message_id": self.new_id()},
            message_id=task_id,
            message_timestamp=int(enqueued_at * 1000),
        )
        return message.encode().decode()

    def pending(self, task_id: str, kind: TaskKind, enqueued_at: float) -> Write:
        return self.store.transition_write(
            task_id,
            TaskStatus.PENDING,
            queue_name=kind.queue,
            task_name=kind.name,
            now=enqueued_at,
            enqueued_at=enqueued_at,
            message=self.message(task_id, kind, enqueued_at),
        )

    def started(self, task_id: str, started_at: float) -> Write:
        return self.store.transition_write(
            task_id, TaskStatus.STARTED, attempt=1, now=started_at, started_at=started_at, worker=WORKER_NAME
        )

    def finished(self, task_id: str, started_at: float, finished_at: float, *, failed: bool) -> Write:
        """The final write of ``after_process_message``: a result, or an error and a traceback."""
        common: dict[str, Any] = {
            "attempt": 1,
            "now": finished_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "duration": finished_at - started_at,
            "worker": WORKER_NAME,
        }
        if not failed:
            result = {"ok": True, "count": self.rng.randrange(100)}
            return self.store.transition_write(task_id, TaskStatus.SUCCESS, result=result, **common)
        error_message = "Expecting value: line 1 column 16 (char 15)"
        return self.store.transition_write(
            task_id,
            TaskStatus.FAILURE,
            traceback=self.traceback_text,
            dead_letter_id=self.new_id(),
            error={"attempt": 1, "type": "JSONDecodeError", "message": error_message, "at": finished_at},
            error_type="JSONDecodeError",
            error_message=error_message,
            **common,
        )

    def finished_task(self, finished_at: float, failed: bool | None = None) -> tuple[str, list[Write]]:
        """A task that ended at ``finished_at``: pending, started, then success or failure."""
        kind = self.pick_kind()
        duration = self.rng.lognormvariate(math.log(kind.median_seconds), 0.8)
        wait = self.rng.lognormvariate(math.log(0.05), 1.0)
        started_at = finished_at - duration
        if failed is None:
            failed = self.rng.random() < kind.failure_rate
        task_id = self.new_id()
        writes = [
            self.pending(task_id, kind, started_at - wait),
            self.started(task_id, started_at),
            self.finished(task_id, started_at, finished_at, failed=failed),
        ]
        return task_id, writes

    def in_flight_task(self, now: float, *, running: bool) -> tuple[str, list[Write]]:
        """A task enqueued in the last minutes: still pending, or started with a progress report."""
        kind = self.pick_kind()
        enqueued_at = now - self.rng.uniform(0, 300)
        task_id = self.new_id()
        writes = [self.pending(task_id, kind, enqueued_at)]
        if running:
            writes.append(self.started(task_id, enqueued_at + 0.05))
            step = self.rng.randrange(1, 10)
            report = Progress(percent=step * 10.0, message=f"step {step} of 10", step=step,
                              total_steps=10, updated_at=enqueued_at + step)  # fmt: skip
            writes.append(self.store.progress_write(task_id, report))
        return task_id, writes


def sample_traceback(size: int) -> str:
    """A real traceback (a JSON decode error, as ``format_exc(limit=30)`` gives it) about ``size`` long.

    Its frame lines are repeated until it is as long as a task's typical traceback, which runs
    through the worker, the task and a library or two.
    """
    try:
        json.loads('{"user_id": 42, }')
    except ValueError:
        text = traceback.format_exc(limit=30)
    lines = text.rstrip("\n").splitlines()
    head, frames, tail = lines[0], lines[1:-1], lines[-1]
    body = list(frames)
    while len("\n".join([head, *body, tail])) < size:
        body += frames
    return "\n".join([head, *body, tail]) + "\n"


# Filling


def send_batches(client: redis.Redis, tasks: Iterator[tuple[str, list[Write]]], batch: int) -> list[str]:
    """Send the writes of ``tasks``, ``batch`` tasks per round trip; return their ids."""
    ids: list[str] = []
    writes: list[Write] = []
    for task_id, task_writes in tasks:
        ids.append(task_id)
        writes += task_writes
        if len(writes) >= batch * 3:
            run_pipelined(client, writes)
            writes = []
    if writes:
        run_pipelined(client, writes)
    return ids


def finished_tasks(maker: RecordMaker, count: int, end: float) -> Iterator[tuple[str, list[Write]]]:
    """``count`` finished tasks whose finish times spread over ``FILL_SPAN`` before ``end``."""
    for _ in range(count):
        yield maker.finished_task(end - maker.rng.uniform(0, FILL_SPAN))


def in_flight_tasks(maker: RecordMaker, count: int, now: float) -> Iterator[tuple[str, list[Write]]]:
    """``count`` tasks sent in the last minutes: every other one started, with a progress report."""
    for i in range(count):
        yield maker.in_flight_task(now, running=i % 2 == 1)


def used_memory(client: redis.Redis) -> int:
    """The server's ``used_memory`` (bytes)."""
    return int(client.info("memory")["used_memory"])


def measure_memory(
    client: redis.Redis, maker: RecordMaker, count: int, batch: int, *, failed: bool
) -> MemoryFigure:
    """Bytes of ``used_memory`` per record, writing ``count`` records on an emptied server."""
    end = time.time() - 60

    def tasks(n: int) -> Iterator[tuple[str, list[Write]]]:
        for _ in range(n):
            yield maker.finished_task(end - maker.rng.uniform(0, FILL_SPAN), failed=failed)

    send_batches(client, tasks(100), batch)  # loads the scripts, opens the connection
    flush(client)
    before = used_memory(client)
    send_batches(client, tasks(count), batch)
    grown = used_memory(client) - before
    index_bytes = sum(
        memory_usage(client, client.scan_iter(match=f"{keys.DEFAULT.ledger_prefix}idx:*", count=1000))
    )
    counters = sum(
        memory_usage(client, client.scan_iter(match=f"{keys.DEFAULT.ledger_prefix}stats:*", count=1000))
    )
    flush(client)
    if failed:
        note = f"failure: error fields, errors list, traceback of {len(maker.traceback_text):,} chars"
    else:
        note = "success: pending -> started -> success, encoded message and a small result"
    kind = "failure" if failed else "success"
    return MemoryFigure(kind, count, grown, index_bytes, counters, note)


def flush(client: redis.Redis) -> None:
    """Empty the server now (Valkey may free a ``FLUSHALL`` lazily, which would skew ``used_memory``)."""
    client.execute_command("FLUSHALL", "SYNC")
    deadline = time.monotonic() + 30
    while client.info("memory").get("lazyfree_pending_objects", 0) and time.monotonic() < deadline:
        time.sleep(0.01)


def memory_usage(client: redis.Redis, names: Iterable[str]) -> list[int]:
    """``MEMORY USAGE`` of each key (every element counted), pipelined."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    return [int(size or 0) for size in pipe.execute()]


def script_time_us(client: redis.Redis) -> float:
    """Server microseconds per ``EVALSHA`` since the last ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", math.nan))


# Measuring


def time_calls(call: Callable[[Any], object], arguments: list[Any], budget: float = math.inf) -> list[float]:
    """Milliseconds each ``call(argument)`` took, after a few untimed calls.

    Stops early once ``budget`` seconds have been spent, if ``MIN_TIMED_CALLS`` were made.
    """
    warm_until = time.perf_counter() + 1.0
    for argument in arguments[:WARMUP_CALLS]:
        call(argument)
        if time.perf_counter() > warm_until:
            break
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    for argument in arguments:
        started = time.perf_counter()
        call(argument)
        samples.append((time.perf_counter() - started) * 1000)
        if started > deadline and len(samples) >= MIN_TIMED_CALLS:
            break
    return samples


def ignoring_argument(call: Callable[[], object]) -> Callable[[Any], object]:
    """``call`` as a function of one argument, for a :func:`time_calls` series without arguments."""
    return lambda _: call()


def measure_handles(
    tm: TaskManager, records: int, ids: list[str], running_ids: list[str], repeat: int, rng: random.Random
) -> list[Series]:
    """``tm.handle(id)``, ``handle.status()`` and ``handle.progress()`` on random ids."""
    chosen = [rng.choice(ids) for _ in range(repeat)]
    handles: list[TaskHandle] = [tm.handle(task_id) for task_id in chosen]
    running = [tm.handle(rng.choice(running_ids)) for _ in range(repeat)]
    if any(handle.progress() is None for handle in running[:10]):
        raise BenchmarkError("a running task has no progress report")
    return [
        Series("handle_status", "handle.status(), random id", records, 2.0, "p99",
               time_calls(lambda h: h.status(), handles)),
        Series("handle_progress", "handle.progress(), running task", records, 2.0, "p99",
               time_calls(lambda h: h.progress(), running)),
        Series("tm_handle", "tm.handle(id) (whole record)", records, None, "p99",
               time_calls(tm.handle, chosen)),
    ]  # fmt: skip


def list_queries() -> list[tuple[str, str, dict[str, Any]]]:
    """The ``list_tasks`` calls measured: (key, label, keyword arguments)."""
    name, queue = FILTER_KIND.name, FILTER_KIND.queue
    short = name.rsplit(".", 1)[-1]
    return [
        ("list_all", "list_tasks() page 1", {}),
        ("list_status", "list_tasks(status=success)", {"status": TaskStatus.SUCCESS}),
        ("list_failed", "list_tasks(status=failure)", {"status": TaskStatus.FAILURE}),
        ("list_queue", f"list_tasks(queue={queue})", {"queue": queue}),
        ("list_task", f"list_tasks(task_name={short})", {"task_name": name}),
        ("list_queue_task", f"list_tasks(queue={queue}, task_name={short})",
         {"queue": queue, "task_name": name}),
        ("list_status_queue", f"list_tasks(status=success, queue={queue})",
         {"status": TaskStatus.SUCCESS, "queue": queue}),
        ("list_deep", "list_tasks() page 1000", {"page": 1000}),
    ]  # fmt: skip


def measure_lists(tm: TaskManager, records: int, repeat: int, budget: float) -> list[Series]:
    """Each query of :func:`list_queries`, pages of 50, ``repeat`` times (or ``budget`` seconds)."""
    series = []
    for key, label, kwargs in list_queries():
        page = tm.list_tasks(page_size=50, **kwargs)
        if len(page.items) != 50:
            raise BenchmarkError(f"{label} returned {len(page.items)} records, not 50")
        query = ignoring_argument(functools.partial(tm.list_tasks, page_size=50, **kwargs))
        samples = time_calls(query, list(range(repeat)), budget)
        series.append(Series(key, f"{label} [{page.total:,} match]", records, 20.0, "p99", samples))
    return series


def measure_statistics(tm: TaskManager, finished: int, window_start: float, repeat: int) -> list[Series]:
    """``tm.statistics()`` over the window holding every finished task, and a few variants."""
    stats = tm.statistics(start=window_start)
    if stats.total != finished:
        raise BenchmarkError(f"statistics counted {stats.total:,} finished tasks, not {finished:,}")
    name, queue = FILTER_KIND.name, FILTER_KIND.queue
    short = name.rsplit(".", 1)[-1]
    calls: list[tuple[str, str, float | None, Callable[[Any], object]]] = [
        ("stats_day", "statistics(), 24 h window", 50.0, lambda _: tm.statistics(start=window_start)),
        ("stats_queue", f"statistics(queue={queue}), 24 h", 50.0,
         lambda _: tm.statistics(start=window_start, queue=queue)),
        ("stats_task", f"statistics(task_name={short}), 24 h", 50.0,
         lambda _: tm.statistics(start=window_start, task_name=name)),
        ("stats_week", "statistics(), 7 day window", None,
         lambda _: tm.statistics(start=time.time() - 7 * DAY)),
    ]  # fmt: skip
    arguments = list(range(repeat))
    return [
        Series(key, f"{label} [{finished:,} tasks]", finished, target, "p99", time_calls(call, arguments))
        for key, label, target, call in calls
    ]


# Reporting


def aligned(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()  # fmt: skip

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def latency_table(series: list[Series]) -> str:
    headers = ["query", "records", "calls", "p50 ms", "p99 ms", "max ms", "target", "met?"]
    rows = []
    for s in series:
        target = f"{s.target_stat} < {s.target_ms:g} ms" if s.target_ms is not None else "-"
        met = "-" if s.met is None else ("yes" if s.met else "NO")
        timings = [f"{s.stat(name):.2f}" for name in ("p50", "p99", "max")]
        rows.append([s.label, f"{s.records:,}", str(len(s.samples)), *timings, target, met])
    return aligned(headers, rows, right={1, 2, 3, 4, 5})


def memory_table(figures: list[MemoryFigure]) -> str:
    headers = ["kind", "written", "used_memory growth", "bytes / record", "record", "indexes", "counters",
               "what"]  # fmt: skip
    rows = []
    for f in figures:
        parts = [f"{value:,.0f}" for value in f.parts().values()]
        rows.append(
            [f.kind, f"{f.count:,}", f"{f.used_bytes / 1e6:,.1f} MB", f"{f.per_record:,.0f}", *parts, f.note]
        )
    return aligned(headers, rows, right={1, 2, 3, 4, 5, 6})


def code_fingerprint() -> str:
    """A short hash of the ledger's sources, to tell apart runs of different working copies."""
    package = Path(aury_tasks.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(
        [
            *package.glob("ledger/*.py"),
            *package.glob("middleware/*.py"),
            package / "tasks" / "ledger.py",
            package / "redis" / "plan.py",
        ]
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def reproduce_command(args: argparse.Namespace) -> str:
    options = ["records", "list_records", "in_flight", "memory_records", "traceback_chars", "status_repeat",
               "list_repeat", "stats_repeat", "budget", "batch", "seed"]  # fmt: skip
    command = "python benchmarks/ledger.py " + " ".join(
        f"--{name.replace('_', '-')} {getattr(args, name)}" for name in options
    )
    return command + (" --aof" if args.aof else "")


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    series: list[Series],
    memory: list[MemoryFigure],
    fills: list[FillReport],
    totals: dict[str, Any],
) -> None:
    print()
    print(latency_table(series))
    print()
    print(memory_table(memory))
    print()
    fill_text = ", ".join(
        f"{f.records:,} records in {f.seconds:.0f} s ({f.per_second:,.0f}/s, {f.script_us:.0f} us of server "
        "time per script call)"
        for f in fills
    )
    print(f"fill (3 script calls per record, {args.batch} records per round trip): {fill_text}")
    used = totals["used_memory"]
    print(
        f"store after the fill: {totals['records']:,} records, used_memory {used / 1e6:,.0f} MB "
        f"({used / totals['records']:,.0f} bytes/record with indexes and counters); "
        f"run took {totals['run_seconds']:.0f} s"
    )
    print(
        f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
        f"{info['platform']}; Python {info['python']}; aury-tasks {info['aury_tasks']} "
        f"(ledger sources {info['ledger_sources']}); redis-py {info['redis_py']} "
        f"({'with' if info['hiredis'] else 'without'} hiredis); {info['server']}"
    )
    print(f"reproduce: {reproduce_command(args)}")
    if args.json:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        payload = {
            "config": config,
            "machine": info,
            "queries": {s.key + f"@{s.records}": {**s.summary(), "samples_ms": s.samples} for s in series},
            "memory": [{**asdict(f), "per_record": f.per_record, "parts": f.parts()} for f in memory],
            "fill": [{**asdict(f), "per_second": f.per_second} for f in fills],
            "totals": totals,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"saved: {args.json}")


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ledger query latencies (status, progress, list_tasks, statistics) and memory per "
        "record, on one private Redis filled through the ledger's own write scripts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--records", type=int, default=1_000_000, help="finished tasks in the store at the end")
    add(
        "--list-records",
        type=int,
        default=200_000,
        help="finished tasks stored when list, status and progress are first measured (again at --records)",
    )
    add("--in-flight", type=int, default=2_000, help="extra tasks still pending, or started with progress")
    add("--memory-records", type=int, default=50_000, help="records written for each memory figure")
    add("--traceback-chars", type=int, default=2_500, help="length of the traceback a failure stores")
    add("--status-repeat", type=int, default=500, help="timed calls of status(), progress(), handle()")
    add("--list-repeat", type=int, default=50, help="timed calls of each list_tasks query")
    add("--stats-repeat", type=int, default=50, help="timed calls of each statistics query")
    add(
        "--budget",
        type=float,
        default=60.0,
        help=f"seconds after which a slow list query stops repeating ({MIN_TIMED_CALLS} calls at least)",
    )
    add("--batch", type=int, default=2_000, help="records per pipelined round trip while filling")
    add("--seed", type=int, default=1, help="seed of the simulated tasks and of the ids read")
    add("--aof", action="store_true", help="keep the server's AOF on (off by default: the fill is faster)")
    add("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    args = parser.parse_args(argv)
    for name in ("records", "list_records", "in_flight", "memory_records", "status_repeat", "list_repeat",
                 "stats_repeat", "batch"):  # fmt: skip
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.records < 50_000 or args.list_records < 50_000:
        parser.error("--records and --list-records must be 50000 or more (the deep page is page 1000)")
    return args


@contextmanager
def private_server(aof: bool) -> Iterator[EmbeddedServer]:
    """The embedded server on a free loopback port in a temporary directory, stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="aury-ledger-bench-"))
    server = start_server(workdir / "redis", port=free_port())
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("auto-aof-rewrite-percentage", 0)
        if not aof:
            client.config_set("appendonly", "no")
        client.close()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def make_manager(url: str, workdir: str) -> TaskManager:
    """A producer-mode TaskManager on ``url``, ignoring any TASK_* variables and .env file."""
    for key in [k for k in os.environ if k.startswith("TASK_")]:
        del os.environ[key]
    settings = TaskSettings.load(_env_file=None, broker_url=url, data_dir=workdir)
    tm = TaskManager("ledger-benchmark", settings=settings)
    tm.initialize(run_mode="producer")
    return tm


def run(
    args: argparse.Namespace, tm: TaskManager
) -> tuple[list[Series], list[MemoryFigure], list[FillReport]]:
    """Memory figures on an empty server, then the fill in stretches, each followed by the reads."""
    store = tm.store
    client = store.client
    maker = RecordMaker(store, args.seed, sample_traceback(args.traceback_chars))
    reader_rng = random.Random(args.seed + 1)
    print(f"memory: {args.memory_records:,} success records, then as many failures", flush=True)
    memory = [measure_memory(client, maker, args.memory_records, args.batch, failed=failed)
              for failed in (False, True)]  # fmt: skip

    fill_end = time.time() - 60
    window_start = fill_end - DAY + 300
    ids: list[str] = []
    in_flight = send_batches(client, in_flight_tasks(maker, args.in_flight, time.time()), args.batch)
    running_ids = in_flight[1::2]
    series: list[Series] = []
    fills: list[FillReport] = []
    for target in sorted({min(args.list_records, args.records), args.records}):
        todo = target - len(ids)
        print(f"fill: {todo:,} finished tasks (to {target:,})", flush=True)
        client.config_resetstat()
        started = time.perf_counter()
        ids += send_batches(client, finished_tasks(maker, todo, fill_end), args.batch)
        fills.append(FillReport(todo, time.perf_counter() - started, script_time_us(client)))
        print(f"  {fills[-1].seconds:.0f} s; measuring at {target:,} records", flush=True)
        series += measure_handles(tm, target, ids + in_flight, running_ids, args.status_repeat, reader_rng)
        series += measure_lists(tm, target, args.list_repeat, args.budget)
    series += measure_statistics(tm, len(ids), window_start, args.stats_repeat)
    return series, memory, fills


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    try:
        with private_server(args.aof) as server:
            info = machine_info(server, ledger_sources=code_fingerprint(), hiredis=HIREDIS_AVAILABLE)
            print(f"# {server.version} at {server.url}", flush=True)
            tm = make_manager(server.url, str(server.data_dir))
            try:
                series, memory, fills = run(args, tm)
                totals = {
                    "records": args.records + args.in_flight,
                    "used_memory": used_memory(tm.store.client),
                    "run_seconds": time.perf_counter() - began,
                }
            finally:
                tm.close()
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    report(args, info, series, memory, fills, totals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
