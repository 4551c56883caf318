"""Prometheus metrics: the whole system as ``aum serve`` shows it, and the worker processes' own.

:func:`render_cluster_metrics` (``GET /metrics`` of the REST API) reads, at scrape time, what
the ledger, the broker's queues and the scheduler hold now: queue depths, delayed and dead
letters, tasks by status, the tasks that ended in the last hour and how long they took, the
workers alive, the scheduled jobs, their fires and misses, and the leader. It costs a handful of
pipelined round trips however many queues and tasks there are.

The ledger keeps no totals that only grow (its statistics are time buckets that expire), so its
task counts are windowed gauges (``…_last_hour``). Counters fit for ``rate()`` come from the
worker processes: with ``TASK_METRICS_PORT`` set, ``aum worker`` adds Dramatiq's
:class:`~dramatiq.middleware.prometheus.Prometheus` middleware (:func:`prepare_worker_metrics`,
:func:`worker_metrics_middleware`), which serves ``dramatiq_messages_total`` and the rest.

``prometheus_client`` (extra ``api``) is imported only when metrics are asked for.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name

from ..core.errors import AuryTasksError, ConfigError, LedgerUnavailable
from ..core.keys import KeySpace, delay_queue_name
from ..core.status import TaskStatus
from ..ledger import stats

if TYPE_CHECKING:
    from dramatiq import Middleware
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.metrics_core import Metric

    from ..config.snapshot import Settings
    from ..ledger.redis_ledger import RedisLedger
    from ..scheduler.manager import SchedulerManager
    from ..tasks.manager import TaskManager

#: Seconds since its last heartbeat within which a worker process counts as alive.
WORKER_SEEN_WITHIN = 30.0
#: The windowed task counts and durations cover the current minute and this many before it.
WINDOW_MINUTES = 59
#: Quantiles of the windowed durations, from the ledger's duration histograms (within ~12 %).
QUANTILES = (0.5, 0.95)
#: Final statuses, as the ledger's statistics count them.
_FINAL = tuple(status for status in TaskStatus if status.is_final)
#: The environment variables Dramatiq's Prometheus middleware reads when it is imported. They
#: stay environment variables, outside the worker's set-up (aury_tasks.worker.setup): Dramatiq,
#: not aury-tasks, reads them, in the worker processes and in its exposition server.
_PROM_DB_ENV, _PROM_HOST_ENV, _PROM_PORT_ENV = "dramatiq_prom_db", "dramatiq_prom_host", "dramatiq_prom_port"
_INSTALL_HINT = "pip install 'aury-tasks[api]'"


def render_cluster_metrics(tm: TaskManager, scheduler: SchedulerManager) -> tuple[bytes, str]:
    """The Prometheus exposition of the system ``tm`` and ``scheduler`` see, read now.

    Returns:
      tuple[bytes, str]: the body and its content type.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(tm, scheduler))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ClusterCollector:
    """A prometheus_client collector reading the ledger, the queues and the scheduler at each scrape.

    Parameters:
      tm: the TaskManager whose ledger and broker are read.
      scheduler: the SchedulerManager whose jobs and lease are read.
    """

    def __init__(self, tm: TaskManager, scheduler: SchedulerManager) -> None:
        self.tm = tm
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        """Every metric, as :mod:`prometheus_client` asks for them."""
        now = time.time()
        try:
            store: RedisLedger | None = self.tm.store
        except LedgerUnavailable:
            store = None
        ledger = _read_ledger(store, now) if store is not None else _Ledger()
        queues = set(ledger.queues) | {q for worker in ledger.workers for q in worker}
        queues |= {q_name(name) for name in self.tm.broker.get_declared_queues()}
        names = sorted(queues)
        counts = _read_status_counts(store, names) if store is not None else {}
        sizes = _read_queue_sizes(self.tm.broker, names, counts)
        yield from _queue_metrics(names, sizes, counts, ledger)
        alive = _gauge(
            "workers_alive",
            f"Worker processes that sent a heartbeat in the last {WORKER_SEEN_WITHIN:.0f} s.",
            [],
        )
        alive.add_metric([], len(ledger.workers))
        yield alive
        for label in ("queue", "task"):
            yield from _window_metrics(ledger, label)
        yield from _scheduler_metrics(self.scheduler)


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    """An ``aury_tasks_<name>`` gauge family."""
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(f"aury_tasks_{name}", documentation, labels=labels)


def _queue_metrics(
    names: list[str],
    sizes: Mapping[str, tuple[int, int, int]],
    counts: Mapping[str, Mapping[str, int]],
    ledger: _Ledger,
) -> Iterator[Metric]:
    """Each queue's depth, delayed, running and dead messages, workers, and kept records by status."""
    depth = _gauge("queue_pending", "Messages waiting in the queue to be run (its depth).", ["queue"])
    delayed = _gauge("queue_delayed", "Messages held back until their eta or retry backoff.", ["queue"])
    running = _gauge("queue_running", "Tasks of the queue being run now.", ["queue"])
    dead = _gauge("queue_dead_letters", "Messages in the queue's dead-letter queue.", ["queue"])
    serving = _gauge("queue_workers", "Worker processes alive that consume the queue.", ["queue"])
    kept = _gauge(
        "tasks",
        "Task records kept in the ledger (7 days by default), by current status.",
        ["queue", "status"],
    )
    for queue in names:
        pending_count, delayed_count, dead_count = sizes[queue]
        depth.add_metric([queue], pending_count)
        delayed.add_metric([queue], delayed_count)
        running.add_metric([queue], counts.get(queue, {}).get(TaskStatus.STARTED.value, 0))
        dead.add_metric([queue], dead_count)
        serving.add_metric([queue], sum(1 for worker in ledger.workers if queue in worker))
        for status, count in counts.get(queue, {}).items():
            kept.add_metric([queue, status], count)
    yield from (depth, delayed, running, dead, serving, kept)


def _window_metrics(ledger: _Ledger, label: str) -> Iterator[Metric]:
    """The last hour by ``label`` (``queue`` or ``task``): sent, stopped by a time limit, ended, run time."""
    window = f"in the current minute and the {WINDOW_MINUTES} before it"
    sent = _gauge(f"{label}_enqueued_last_hour", f"Tasks sent {window}, by {label} (kept records).", [label])
    for name, count in sorted(ledger.sent[label].items()):
        sent.add_metric([name], count)
    yield sent
    stopped = _gauge(
        f"{label}_time_limits_last_hour",
        f"Attempts stopped by their time limit {window}, by {label}.", [label],
    )  # fmt: skip
    for name in sorted(ledger.sent[label]):
        stopped.add_metric([name], ledger.time_limits[label].get(name, 0))
    yield stopped
    ended = _gauge(
        f"{label}_ended_last_hour", f"Tasks that ended {window}, by {label} and final status.",
        [label, "status"],
    )  # fmt: skip
    took = _gauge(
        f"{label}_duration_seconds_last_hour",
        f"Run time of the tasks that ended {window}, by {label} (the ledger's histogram, ~12 %).",
        [label, "quantile"],
    )
    for name, (counters, histogram) in sorted(ledger.windows[label].items()):
        for status in _FINAL:
            ended.add_metric([name, status.value], counters[status.value])
        for quantile in QUANTILES:
            value = stats.percentile(histogram, quantile)
            if value is not None:
                took.add_metric([name, str(quantile)], value)
    yield ended
    yield took


class _Ledger:
    """What one pipelined read of the ledger gave (empty without a ledger)."""

    def __init__(self) -> None:
        self.queues: set[str] = set()
        #: The queues of each worker process alive.
        self.workers: list[list[str]] = []
        #: ``{"queue"|"task": {name: (counters, duration histogram)}}`` of the window.
        self.windows: dict[str, dict[str, Any]] = {"queue": {}, "task": {}}
        #: ``{"queue"|"task": {name: tasks sent in the window}}``.
        self.sent: dict[str, dict[str, int]] = {"queue": {}, "task": {}}
        #: ``{"queue"|"task": {name: attempts stopped by their time limit in the window}}``.
        self.time_limits: dict[str, dict[str, int]] = {"queue": {}, "task": {}}


def _read_ledger(store: RedisLedger, now: float) -> _Ledger:
    """Queues, task names and live workers (one round trip), then the window's stat buckets (one)."""
    store.catch_up()
    pipe = store.client.pipeline(transaction=False)
    pipe.smembers(store.keys.known_queues())
    pipe.smembers(store.keys.known_task_names())
    pipe.zrangebyscore(store.keys.workers_seen(), int((now - WORKER_SEEN_WITHIN) * 1000), "+inf")
    pipe.hgetall(store.keys.workers())
    queues, task_names, seen, infos = pipe.execute()
    ledger = _Ledger()
    ledger.queues = set(queues)
    ledger.workers = [list(json.loads(infos[worker_id]).get("queues") or []) for worker_id in seen
                      if worker_id in infos]  # fmt: skip
    start = (math.floor(now / 60) - WINDOW_MINUTES) * 60
    buckets = stats.window_buckets(start, now, now)
    dimensions = [("queue", name, f"q:{name}") for name in sorted(queues)]
    dimensions += [("task", name, f"t:{name}") for name in sorted(task_names)]
    pipe = store.client.pipeline(transaction=False)
    for kind, name, dimension in dimensions:
        for granularity, bucket in buckets:
            pipe.hgetall(store.keys.stats_bucket(granularity, bucket, dimension))
        index = store.keys.queue_index(name) if kind == "queue" else store.keys.task_name_index(name)
        pipe.zcount(index, int(start * 1000), "+inf")  # scored by enqueue time, ms
    minutes = range(math.floor(now / 60) - WINDOW_MINUTES, math.floor(now / 60) + 1)
    for minute in minutes:
        pipe.hgetall(store.keys.time_limit_counts(minute))
    read = pipe.execute()
    for counts in read[len(read) - len(minutes) :]:
        for field, count in counts.items():
            kind, _, name = field.partition(":")
            if kind in ("q", "t"):
                totals = ledger.time_limits["queue" if kind == "q" else "task"]
                totals[name] = totals.get(name, 0) + int(count)
    read = read[: len(read) - len(minutes)]
    width = len(buckets) + 1
    for position, (kind, name, _) in enumerate(dimensions):
        chunk = read[position * width : (position + 1) * width]
        ledger.windows[kind][name] = stats.merge_buckets(chunk[:-1])
        ledger.sent[kind][name] = int(chunk[-1])
    return ledger


def _read_status_counts(store: RedisLedger, queues: list[str]) -> dict[str, dict[str, int]]:
    """Kept records of each queue by status (one round trip; the backlog was caught up before)."""
    pipe = store.client.pipeline(transaction=False)
    for queue in queues:
        for status in TaskStatus:
            pipe.zcard(store.keys.status_index(status.value, queue_name=queue))
    read = iter(pipe.execute())
    return {queue: {status.value: int(next(read)) for status in TaskStatus} for queue in queues}


def _read_queue_sizes(
    broker: Any, queues: list[str], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, tuple[int, int, int]]:
    """``(pending, delayed, dead)`` of each queue, as :meth:`TaskManager.queue_stats` counts them.

    From the broker's own keys on Redis (one round trip); from the ledger on other brokers.
    """
    sizes: dict[str, tuple[int, int, int]] = {}
    if not isinstance(broker, RedisBroker):
        for queue in queues:
            count = counts.get(queue, {})
            delayed = count.get(TaskStatus.SCHEDULED.value, 0) + count.get(TaskStatus.RETRYING.value, 0)
            sizes[queue] = (
                count.get(TaskStatus.PENDING.value, 0),
                delayed,
                count.get(TaskStatus.DEAD.value, 0),
            )
        return sizes
    keys = KeySpace(broker.namespace)  # the broker's keys (its namespace is the key prefix)
    pipe = broker.client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(keys.broker_queue(queue))
        pipe.zcard(keys.priority_queue(queue))  # waiting with a priority (aury_tasks.broker.redis.priority)
        pipe.hlen(keys.broker_messages(delay_queue_name(queue)))
        pipe.zcard(keys.dead_letters(queue))
    read = iter(pipe.execute())
    for queue in queues:
        listed, prioritized, delayed, dead = (int(next(read)) for _ in range(4))
        sizes[queue] = (listed + prioritized, delayed, dead)
    return sizes


def _scheduler_metrics(scheduler: SchedulerManager) -> Iterator[Metric]:
    """The jobs, their fires and misses, and the leader lease (one round trip)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    try:
        store = scheduler.store
        keys = store.keys
        pipe = store.client.pipeline(transaction=False)
        pipe.get(keys.scheduler_leader())
        pipe.hgetall(keys.scheduler_jobs())
        pipe.hgetall(keys.scheduler_runs())
        pipe.hgetall(keys.scheduler_fire_counts())
        pipe.hgetall(keys.scheduler_miss_counts())
        leader, jobs, runs, fired, missed = pipe.execute()
    except AuryTasksError:  # no Redis to keep jobs in: no scheduler
        return
    paused = 0
    for text in jobs.values():
        try:
            paused += bool(json.loads(text).get("paused"))
        except (ValueError, AttributeError):
            continue  # a definition the scheduler cannot read either (it logs it)
    total = GaugeMetricFamily("aury_tasks_scheduler_jobs", "Scheduled jobs defined.")
    total.add_metric([], len(jobs))
    yield total
    held = GaugeMetricFamily("aury_tasks_scheduler_jobs_paused", "Scheduled jobs paused.")
    held.add_metric([], paused)
    yield held
    lease = GaugeMetricFamily(
        "aury_tasks_scheduler_leader",
        "1 while a scheduler process holds the leader lease (label: which, host:pid:id); 0 when none does.",
        labels=["holder"],
    )
    lease.add_metric([leader or ""], 1 if leader else 0)
    yield lease
    fires = CounterMetricFamily(
        "aury_tasks_scheduler_fires", "Ticks each job sent (by the leader, or run by hand).", labels=["job"]
    )
    misses = CounterMetricFamily(
        "aury_tasks_scheduler_misses",
        "Ticks each job dropped because the scheduler was later than the job's misfire_grace_time.",
        labels=["job"],
    )
    last = GaugeMetricFamily(
        "aury_tasks_scheduler_last_fire_timestamp_seconds", "When each job last sent a tick (UNIX time).",
        labels=["job"],
    )  # fmt: skip
    for job_id in sorted(jobs):
        fires.add_metric([job_id], int(fired.get(job_id, 0)))
        misses.add_metric([job_id], int(missed.get(job_id, 0)))
        if job_id in runs:
            last.add_metric([job_id], float(json.loads(runs[job_id])["fired_at"]))
    yield from (fires, misses, last)


# The worker processes' metrics


def prepare_worker_metrics(settings: Settings) -> str:
    """Get ``aum worker`` ready to serve its worker processes' metrics; call only with a port set.

    Checks that ``prometheus_client`` is installed and the port is free, makes a private
    directory for prometheus_client's multiprocess files and says where, and on which address,
    to Dramatiq's Prometheus middleware (through the environment the worker processes and the
    exposition server inherit).

    Returns:
      str: the directory, to remove when the worker stops.

    Raises:
      ConfigError: prometheus_client is missing, or the port is taken.
    """
    port, host = settings.metrics_port, settings.metrics_host
    try:  # this process is replaced by the supervisor (exec): the import costs the workers nothing
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"invalid setting TASK_METRICS_PORT: serving metrics on port {port} needs prometheus-client: "
            f"{_INSTALL_HINT}"
        ) from None
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(
            f"invalid setting TASK_METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    directory = tempfile.mkdtemp(prefix="aury-tasks-metrics-")
    os.environ.update({_PROM_DB_ENV: directory, _PROM_HOST_ENV: host, _PROM_PORT_ENV: str(port)})
    return directory


def worker_metrics_middleware() -> Middleware:
    """Dramatiq's Prometheus middleware, for a worker process :func:`prepare_worker_metrics` set up.

    It counts messages, errors, retries, dead letters and durations by queue and actor in
    prometheus_client's multiprocess files; the supervisor runs its exposition server.
    """
    from dramatiq.middleware.prometheus import Prometheus

    return Prometheus()
