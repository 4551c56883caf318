"""The ledger in Redis: a hash per task, sorted-set indexes, bucketed counters, TTL everywhere.

Layout (names in :class:`~aury_tasks.core.keys.KeySpace`, under the ledger prefix):

* ``task:<id>``: the record (a hash); it expires ``ttl`` after its last change.
* ``idx:all``, ``idx:queue:<q>``, ``idx:task:<name>``: every task id, scored by enqueue time.
* ``idx:status:<s>`` and ``idx:status:<s>:queue:<q>`` / ``:task:<name>``: ids by current status.
  So every filter of :meth:`RedisLedger.list_tasks` but queue *and* task name together is one
  ``ZREVRANGEBYSCORE`` and its total one ``ZCOUNT``; nothing ever scans keys.
* ``unindexed``: ids of records written by a send whose index entries are not added yet. A send
  only writes the record (its round trip stays short); every index read first adds the waiting
  entries (:meth:`RedisLedger.catch_up`), as do workers that ran tasks and a send that finds
  more than :data:`~aury_tasks.redis.scripts.INDEX_BACKLOG_LIMIT` waiting. Reads never miss a task.
* ``stats:{m|h}:<bucket>[:q:<q>|:t:<name>]``: counters of :mod:`aury_tasks.ledger.stats`.

Index entries outlive expired records until :meth:`RedisLedger.trim_indexes` (run by workers
every few minutes) drops them; readers skip ids whose record is gone.

The reads are command plans, written once in :mod:`~aury_tasks.ledger.reads` (by id),
:mod:`~aury_tasks.ledger.pages` (pages, the backlog's catch-up) and :mod:`~aury_tasks.ledger.stats`;
the store runs them on its client, an asyncio caller on the event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import redis
import redis.asyncio

from ..core.keys import DEFAULT_RESULT_TTL, MINUTE_BUCKET_TTL, KeySpace
from ..core.status import TaskStatus
from ..redis.plan import run, run_async
from ..redis.scripts import CLEANUP, PROGRESS, SEND_RECORD, TRANSITION, TRIM_INDEX, Write
from . import pages, reads, stats
from .pages import PageQuery
from .records import Progress, Statistics, TaskPage, TaskRecord, WorkerInfo
from .tally import StatsTally

#: Fields stored as JSON.
_JSON_FIELDS = frozenset({"result", "metadata", "errors"})
#: Ids looked at per script call when trimming or cleaning up.
_BATCH = 500


class RedisLedger:
    """Task records in Redis, each status change one atomic, conditional script call.

    Parameters:
      client: a redis-py client with ``decode_responses=True`` (so its replies are ``str``: they
        are cast from redis-py's ``bytes | str``).
      keys: the keys the ledger lives under (``TASK_KEY_PREFIX``'s).
      ttl: seconds a record is kept after its last change (default 7 days).
      url: the client's URL, for asyncio clients made from it (never logged).
    """

    def __init__(
        self, client: redis.Redis, keys: KeySpace, *, ttl: float = DEFAULT_RESULT_TTL, url: str = ""
    ) -> None:
        self.client = client
        #: The keys of this ledger.
        self.keys = keys
        self.url = url
        self.ttl = ttl
        self.ttl_ms = int(ttl * 1000)
        #: Where a worker adds up the statistics of its final writes (``None``: the script counts).
        self.tally: StatsTally | None = None

    # Writes

    def transition_write(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        attempt: int = 1,
        queue_name: str = "",
        task_name: str = "",
        duration: float | None = None,
        error: dict[str, Any] | None = None,
        cancel: bool = False,
        now: float | None = None,
        **fields: Any,
    ) -> Write:
        """The script call that moves ``task_id`` to ``status``, ready to send or to pipeline.

        Parameters:
          attempt: the attempt the write belongs to; ``0`` keeps the record's.
          queue_name, task_name: used when the record does not exist yet.
          duration: seconds the run took (counted in the statistics of a final write).
          error: appended to the record's list of errors.
          cancel: also announce the id on the cancel channel and keep it in the cancelled set.
          **fields: further record fields; ``None`` values are left out.
        """
        pairs = _field_pairs(fields)
        duration_us = bucket = ""
        if duration is not None:
            micros = max(1, int(duration * 1_000_000))
            duration_us, bucket = str(micros), str(stats.duration_bucket(micros))
        now_ms = int((now or time.time()) * 1000)
        tally = self.tally if status.is_final and queue_name and task_name else None
        return Write(
            TRANSITION,
            [self.keys.task_record(task_id)],
            [
                task_id,
                status.value,
                attempt,
                status.phase,
                int(status.is_final),
                self.ttl_ms,
                now_ms,
                self.keys.ledger_prefix,
                queue_name,
                task_name,
                duration_us,
                bucket,
                json.dumps(error, separators=(",", ":")) if error else "",
                "cancel" if cancel else "",
                "" if tally is not None else MINUTE_BUCKET_TTL,
                *pairs,
            ],
            on_reply=None
            if tally is None
            else tally.on_written(now_ms, queue_name, task_name, status.value, duration_us, bucket),
        )

    def send_write(
        self, task_id: str, status: TaskStatus, *, queue_name: str, task_name: str, now: float, **fields: Any
    ) -> Write:
        """A send's write of its task's record: :meth:`transition_write` for a first attempt being
        sent (``pending`` or ``scheduled``), in the short form of :data:`SEND_RECORD`.

        ``enqueued_at`` is ``now``; ``**fields`` as :meth:`transition_write` takes them.
        """
        return Write(
            SEND_RECORD,
            [self.keys.task_record(task_id)],
            [task_id, status.value, status.phase, queue_name, task_name, self.ttl_ms, int(now * 1000),
             "enqueued_at", repr(now), *_field_pairs(fields)],
        )  # fmt: skip

    def transition(self, task_id: str, status: TaskStatus, *, attempt: int = 1, **fields: Any) -> bool:
        """Move ``task_id`` to ``status`` for ``attempt`` if that is forward; set ``fields`` with it.

        Returns:
          bool: whether the write was applied (``False``: the record is already further on).
        """
        return bool(self.transition_write(task_id, status, attempt=attempt, **fields).run(self.client))

    def progress_write(self, task_id: str, progress: Progress) -> Write:
        """The script call that stores and publishes a progress report (ignored once ended)."""
        return Write(
            PROGRESS, [self.keys.task_record(task_id)], [task_id, self.keys.ledger_prefix, progress.to_json()]
        )

    def set_fields(self, task_id: str, **fields: str) -> None:
        """Set descriptive fields on an existing record (never its status)."""
        record_key = self.keys.task_record(task_id)
        if self.client.exists(record_key):
            self.client.hset(record_key, mapping=cast("Mapping[Any, str]", fields))  # (invariant key type)

    # Reads by id (each one a plan of :mod:`aury_tasks.ledger.reads`)

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or ``None``."""
        return run(self.client, reads.record(self.keys, task_id))

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """The records of ``task_ids`` that still exist, in the same order (one round trip)."""
        return run(self.client, reads.records(self.keys, task_ids))

    def status(self, task_id: str) -> TaskStatus | None:
        """Only the status of ``task_id`` (one ``HGET``), or ``None`` without a record."""
        return run(self.client, reads.status(self.keys, task_id))

    def progress(self, task_id: str) -> tuple[TaskStatus, Progress | None] | None:
        """The status and last progress report of ``task_id``, or ``None`` without a record."""
        return run(self.client, reads.progress(self.keys, task_id))

    # Queries (plans of :mod:`aury_tasks.ledger.pages` and :mod:`aury_tasks.ledger.stats`)

    def catch_up(self, *, limit: int | None = None) -> int:
        """Add the index entries of records written by sends since the last catch-up.

        Every index read of this store calls it first, so a query never misses a task sent
        before it. Runs batches of a thousand ids until none is left (or ``limit`` were done).

        Returns:
          int: how many ids were taken from the backlog.
        """
        return run(self.client, pages.catch_up(self.keys, self.ttl_ms, limit))

    def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        queue_name: str | None = None,
        task_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> TaskPage:
        """Records matching every filter given, newest (by enqueue time) first."""
        query = PageQuery.of(self.keys, status, queue_name, task_name, since, until, page, page_size)
        return run(self.client, pages.page_of_tasks(query, self.ttl_ms))

    # The same parameters as list_tasks, laid out compactly: the two share one plan.
    async def list_tasks_async(self, client: redis.asyncio.Redis, *, status: TaskStatus | str | None = None,
                               queue_name: str | None = None, task_name: str | None = None,
                               since: float | None = None, until: float | None = None, page: int = 1,
                               page_size: int = 50) -> TaskPage:  # fmt: skip
        """:meth:`list_tasks` on the running event loop, through ``client`` (this store's server)."""
        query = PageQuery.of(self.keys, status, queue_name, task_name, since, until, page, page_size)
        return await run_async(client, pages.page_of_tasks(query, self.ttl_ms))

    def statistics(
        self, start: float, end: float, *, queue_name: str | None = None, task_name: str | None = None
    ) -> Statistics:
        """Counts and durations of the tasks that ended in ``[start, end)`` (UNIX seconds).

        With both ``queue_name`` and ``task_name``, the task name's counters are used.
        """
        return self.statistics_series(start, end, 1, queue_name=queue_name, task_name=task_name)[0]

    def statistics_series(
        self,
        start: float,
        end: float,
        points: int,
        *,
        queue_name: str | None = None,
        task_name: str | None = None,
    ) -> list[Statistics]:
        """:meth:`statistics` of ``points`` equal slices of ``[start, end)``, in one round trip.

        Only the part of a slice where buckets can exist is read: from the oldest hour bucket
        (kept the record lifetime and an hour, at least the default 7 days) to the next minute,
        so a window of decades costs what a window of a week does.
        """
        return run(
            self.client,
            stats.statistics_series(
                self.keys, start, end, points, ttl=self.ttl, queue_name=queue_name, task_name=task_name
            ),
        )

    def count_by_status(self, queue_name: str, statuses: Iterable[TaskStatus]) -> dict[TaskStatus, int]:
        """How many kept records of ``queue_name`` are in each of ``statuses``."""
        wanted = list(statuses)
        self.catch_up()
        pipe = self.client.pipeline(transaction=False)
        for status in wanted:
            pipe.zcard(self.keys.status_index(status.value, queue_name=queue_name))
        return dict(zip(wanted, pipe.execute(), strict=True))

    def queues(self) -> set[str]:
        """Every queue the ledger has seen a task on."""
        self.catch_up()
        return set(cast("set[str]", self.client.smembers(self.keys.known_queues())))

    def task_names(self) -> set[str]:
        """Every task name the ledger has seen."""
        self.catch_up()
        return set(cast("set[str]", self.client.smembers(self.keys.known_task_names())))

    # Cancellation

    def cancelled_since(self, since: float) -> set[str]:
        """Ids cancelled since ``since`` (UNIX seconds)."""
        return set(
            cast("list[str]", self.client.zrangebyscore(self.keys.cancelled_ids(), int(since * 1000), "+inf"))
        )

    # Workers

    def heartbeat(self, worker: WorkerInfo) -> None:
        """Announce a live worker (called every few seconds by each worker process)."""
        info = {
            "host": worker.host,
            "pid": worker.pid,
            "queues": worker.queues,
            "started_at": worker.started_at,
        }
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.workers(), worker.id, json.dumps(info))
        pipe.zadd(self.keys.workers_seen(), {worker.id: int(time.time() * 1000)})
        pipe.execute()

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker that stopped."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(self.keys.workers(), worker_id)
        pipe.zrem(self.keys.workers_seen(), worker_id)
        pipe.execute()

    def workers(self, *, seen_within: float = 30.0) -> list[WorkerInfo]:
        """Workers that announced themselves in the last ``seen_within`` seconds."""
        seen = cast(
            "list[tuple[str, float]]",
            self.client.zrangebyscore(
                self.keys.workers_seen(), int((time.time() - seen_within) * 1000), "+inf", withscores=True
            ),
        )
        if not seen:
            return []
        infos = self.client.hmget(self.keys.workers(), [worker_id for worker_id, _ in seen])
        workers = []
        for (worker_id, last_seen), info in zip(seen, infos, strict=True):
            if info:
                data = json.loads(info)
                workers.append(
                    WorkerInfo(
                        id=worker_id,
                        host=data["host"],
                        pid=data["pid"],
                        queues=data["queues"],
                        started_at=data["started_at"],
                        last_seen=last_seen / 1000,
                    )
                )
        return workers

    # Housekeeping

    def cleanup(self, older_than: float) -> int:
        """Delete the records of tasks that ended more than ``older_than`` seconds ago.

        Returns:
          int: how many records were deleted.
        """
        self.catch_up()
        cutoff = time.time() - older_than
        deleted = offset = 0
        while True:
            looked, removed = CLEANUP(
                self.client, [], [self.keys.ledger_prefix, int(cutoff * 1000), repr(cutoff), offset, _BATCH]
            )
            deleted += removed
            if looked < _BATCH:
                return deleted
            offset += looked - removed

    def trim_indexes(self) -> int:
        """Drop index entries of expired records, stale workers and old cancel marks.

        Returns:
          int: how many index entries were removed.
        """
        now = time.time()
        cutoff = int((now - self.ttl) * 1000)
        queues, task_names = self.queues(), self.task_names()
        indexes = [self.keys.all_index()]
        indexes += [self.keys.queue_index(queue) for queue in queues]
        indexes += [self.keys.task_name_index(name) for name in task_names]
        pairs = [self.keys.task_queue_index(name, queue) for name in task_names for queue in queues]
        if pairs:
            pipe = self.client.pipeline(transaction=False)
            for pair in pairs:
                pipe.exists(pair)
            indexes += [pair for pair, exists in zip(pairs, pipe.execute(), strict=True) if exists]
        for status in TaskStatus:
            indexes.append(self.keys.status_index(status.value))
            indexes += [self.keys.status_index(status.value, queue_name=queue) for queue in queues]
            indexes += [self.keys.status_index(status.value, task_name=name) for name in task_names]
        removed = 0
        for index in indexes:
            offset = 0
            while True:
                looked, dropped = TRIM_INDEX(
                    self.client, [index], [self.keys.task_record(""), cutoff, offset, _BATCH]
                )
                removed += dropped
                if looked < _BATCH:
                    break
                offset += looked - dropped
        self.client.zremrangebyscore(self.keys.cancelled_ids(), "-inf", cutoff)
        stale = cast(
            "list[str]",
            self.client.zrangebyscore(self.keys.workers_seen(), "-inf", int((now - 86_400) * 1000)),
        )
        for worker_id in stale:
            self.forget_worker(worker_id)
        return removed


def _field_pairs(fields: dict[str, Any]) -> list[Any]:
    """Record fields as the scripts take them: name, value, … (``None`` left out, JSON fields encoded)."""
    pairs: list[Any] = []
    for name, value in fields.items():
        if value is None:
            continue
        if name in _JSON_FIELDS:
            value = json.dumps(value, separators=(",", ":"), allow_nan=False)
        elif isinstance(value, float):
            value = repr(value)
        pairs += [name, value]
    return pairs
