"""The ledger in Redis: a hash per task, sorted-set indexes, bucketed counters, TTL everywhere.

Layout (names in :mod:`aury_tasks.core.keys`):

* ``task:<id>``: the record (a hash); it expires ``ttl`` after its last change.
* ``idx:all``, ``idx:queue:<q>``, ``idx:task:<name>``: every task id, scored by enqueue time.
* ``idx:status:<s>`` and ``idx:status:<s>:queue:<q>`` / ``:task:<name>``: ids by current status.
  So every filter of :meth:`RedisTaskStore.list_tasks` but queue *and* task name together is one
  ``ZREVRANGEBYSCORE`` and its total one ``ZCOUNT``; nothing ever scans keys.
* ``unindexed``: ids of records written by a send whose index entries are not added yet. A send
  only writes the record (its round trip stays short); every index read first adds the waiting
  entries (:meth:`RedisTaskStore.catch_up`), as do workers that ran tasks and a send that finds
  more than :data:`~aury_tasks.redis.scripts.INDEX_BACKLOG_LIMIT` waiting. Reads never miss a task.
* ``stats:{m|h}:<bucket>[:q:<q>|:t:<name>]``: counters of :mod:`aury_tasks.ledger.stats`.

Index entries outlive expired records until :meth:`RedisTaskStore.trim_indexes` (run by workers
every few minutes) drops them; readers skip ids whose record is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio

from ..core import keys
from ..core.status import TaskStatus
from ..redis.scripts import (
    CLEANUP,
    INDEX_BACKLOG,
    LIST_PAGE,
    PROGRESS,
    SEND_RECORD,
    TRANSITION,
    TRIM_INDEX,
    Write,
)
from . import stats
from .records import Progress, Statistics, TaskPage, TaskRecord, WorkerInfo

#: Fields stored as JSON.
_JSON_FIELDS = frozenset({"result", "metadata", "errors"})
_FLOAT_FIELDS = ("enqueued_at", "eta", "expires_at", "started_at", "finished_at")
_TEXT_FIELDS = (
    "task_name",
    "queue_name",
    "worker",
    "error_type",
    "error_message",
    "traceback",
    "reason",
    "retry_of",
    "retried_by",
    "workflow_id",
)
#: Ids looked at per script call when trimming or cleaning up.
_BATCH = 500
#: Backlog ids indexed per script call (a few milliseconds of the server's time).
_INDEX_BATCH = 1_000


class RedisTaskStore:
    """Task records in Redis, each status change one atomic, conditional script call.

    Parameters:
      client: a redis-py client with ``decode_responses=True`` (so its replies are ``str``: they
        are cast from redis-py's ``bytes | str``).
      ttl: seconds a record is kept after its last change (default 7 days).
      url: the client's URL, for asyncio clients made from it (never logged).
    """

    def __init__(self, client: redis.Redis, *, ttl: float = keys.DEFAULT_RESULT_TTL, url: str = "") -> None:
        self.client = client
        self.url = url
        self.ttl = ttl
        self.ttl_ms = int(ttl * 1000)

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
        return Write(
            TRANSITION,
            [keys.task_record(task_id)],
            [
                task_id,
                status.value,
                attempt,
                status.phase,
                int(status.is_final),
                self.ttl_ms,
                int((now or time.time()) * 1000),
                keys.LEDGER_PREFIX,
                queue_name,
                task_name,
                duration_us,
                bucket,
                json.dumps(error, separators=(",", ":")) if error else "",
                "cancel" if cancel else "",
                keys.MINUTE_BUCKET_TTL,
                *pairs,
            ],
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
            [keys.task_record(task_id)],
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
        return Write(PROGRESS, [keys.task_record(task_id)], [task_id, keys.LEDGER_PREFIX, progress.to_json()])

    def set_fields(self, task_id: str, **fields: str) -> None:
        """Set descriptive fields on an existing record (never its status)."""
        record_key = keys.task_record(task_id)
        if self.client.exists(record_key):
            self.client.hset(record_key, mapping=cast("Mapping[Any, str]", fields))  # (invariant key type)

    # Reads by id

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or ``None``."""
        return record_from_hash(
            task_id, cast("dict[str, str]", self.client.hgetall(keys.task_record(task_id)))
        )

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """The records of ``task_ids`` that still exist, in the same order (one round trip)."""
        ids = list(task_ids)
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(keys.task_record(task_id))
        records = (record_from_hash(task_id, raw) for task_id, raw in zip(ids, pipe.execute(), strict=True))
        return [record for record in records if record is not None]

    def status(self, task_id: str) -> TaskStatus | None:
        """Only the status of ``task_id`` (one ``HGET``), or ``None`` without a record."""
        value = self.client.hget(keys.task_record(task_id), "status")
        return TaskStatus(value) if value else None

    def progress(self, task_id: str) -> tuple[TaskStatus, Progress | None] | None:
        """The status and last progress report of ``task_id``, or ``None`` without a record."""
        status, progress = self.client.hmget(keys.task_record(task_id), ["status", "progress"])
        if not status:
            return None
        return TaskStatus(status), Progress.from_json(progress) if progress else None

    # Queries

    def catch_up(self, *, limit: int | None = None) -> int:
        """Add the index entries of records written by sends since the last catch-up.

        Every index read of this store calls it first, so a query never misses a task sent
        before it. Runs batches of a thousand ids until none is left (or ``limit`` were done).

        Returns:
          int: how many ids were taken from the backlog.
        """
        done = 0
        while limit is None or done < limit:
            count = _INDEX_BATCH if limit is None else min(_INDEX_BATCH, limit - done)
            popped, waiting = INDEX_BACKLOG(
                self.client, [], [keys.LEDGER_PREFIX, count, self.ttl_ms, int(time.time() * 1000)]
            )
            done += popped
            if not waiting:
                break
        return done

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
        query = _PageQuery.of(status, queue_name, task_name, since, until, page, page_size)
        if query.index is None:
            self.catch_up()
            assert queue_name is not None and task_name is not None
            matching = self._ids_walked(query.status, queue_name, task_name, query.low, query.high)
            ids = matching[query.offset : query.offset + page_size]
            return TaskPage(items=self.get_many(ids), total=len(matching), page=page, page_size=page_size)
        reply = LIST_PAGE(self.client, [], self._page_args(query))
        if reply[0]:  # a backlog bigger than one call indexes
            self.catch_up()
            reply = LIST_PAGE(self.client, [], self._page_args(query))
        return _page_of(reply, page, page_size)

    async def list_tasks_async(
        self,
        client: redis.asyncio.Redis,
        *,
        status: TaskStatus | str | None = None,
        queue_name: str | None = None,
        task_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> TaskPage:
        """:meth:`list_tasks` on the running event loop, through ``client`` (this store's server)."""
        query = _PageQuery.of(status, queue_name, task_name, since, until, page, page_size)
        if query.index is None:  # the rare three-filter walk: several round trips, in a thread
            return await asyncio.to_thread(
                self.list_tasks, status=status, queue_name=queue_name, task_name=task_name, since=since,
                until=until, page=page, page_size=page_size,
            )  # fmt: skip
        reply = await LIST_PAGE.call_async(client, [], self._page_args(query))
        if reply[0]:
            await asyncio.to_thread(self.catch_up)
            reply = await LIST_PAGE.call_async(client, [], self._page_args(query))
        return _page_of(reply, page, page_size)

    def _page_args(self, query: _PageQuery) -> list[Any]:
        return [keys.LEDGER_PREFIX, self.ttl_ms, int(time.time() * 1000), query.index, query.low, query.high,
                query.offset, query.page_size, _INDEX_BATCH]  # fmt: skip

    def _ids_walked(self, status: str, queue_name: str, task_name: str, low: str, high: str) -> list[str]:
        # Status, queue and task name together have no index of their own: walk the smaller of
        # (the task's ids in this status) and (the task's ids on this queue), newest first, and
        # keep the ids that match the other filter.
        by_status = keys.status_index(status, task_name=task_name)
        by_queue = keys.task_queue_index(task_name, queue_name)
        pipe = self.client.pipeline(transaction=False)
        pipe.zcount(by_status, low, high)
        pipe.zcount(by_queue, low, high)
        in_status, on_queue = pipe.execute()
        index, field, wanted = (
            (by_status, "queue_name", queue_name) if in_status <= on_queue else (by_queue, "status", status)
        )
        matching: list[str] = []
        upper = high
        while True:
            # By score, not offset, so each batch costs the same however deep the walk is.
            batch = cast(
                "list[tuple[str, float]]",
                self.client.zrevrangebyscore(index, upper, low, start=0, num=_BATCH, withscores=True),
            )
            if not batch:
                return matching
            pipe = self.client.pipeline(transaction=False)
            for task_id, _ in batch:
                pipe.hget(keys.task_record(task_id), field)
            matching += [task_id for (task_id, _), value in zip(batch, pipe.execute(), strict=True)
                         if value == wanted]  # fmt: skip
            if len(batch) < _BATCH:
                return matching
            last_score = batch[-1][1]
            upper = f"({last_score:.0f}"
            # Ids sharing the last score are read again from the next batch's start: take them now.
            ties = cast("list[str]", self.client.zrangebyscore(index, last_score, last_score))
            seen = {task_id for task_id, score in batch if score == last_score}
            extra = [task_id for task_id in reversed(ties) if task_id not in seen]
            if extra:
                pipe = self.client.pipeline(transaction=False)
                for task_id in extra:
                    pipe.hget(keys.task_record(task_id), field)
                matching += [task_id for task_id, value in zip(extra, pipe.execute(), strict=True)
                             if value == wanted]  # fmt: skip

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
        dimension = f"t:{task_name}" if task_name else (f"q:{queue_name}" if queue_name else "")
        now, step = time.time(), (end - start) / points
        oldest, newest = now - max(self.ttl, keys.DEFAULT_RESULT_TTL) - 3600, now + 60
        slices = [(start + i * step, start + (i + 1) * step) for i in range(points)]
        wanted = [[keys.stats_bucket(granularity, bucket, dimension)
                   for granularity, bucket in stats.window_buckets(max(low, oldest), min(high, newest), now)]
                  for low, high in slices]  # fmt: skip
        distinct = list(dict.fromkeys(key for slice_keys in wanted for key in slice_keys))
        pipe = self.client.pipeline(transaction=False)
        for key in distinct:
            pipe.hgetall(key)
        read = dict(zip(distinct, pipe.execute(), strict=True))
        return [_statistics(low, high, *stats.merge_buckets(read[key] for key in slice_keys))
                for (low, high), slice_keys in zip(slices, wanted, strict=True)]  # fmt: skip

    def count_by_status(self, queue_name: str, statuses: Iterable[TaskStatus]) -> dict[TaskStatus, int]:
        """How many kept records of ``queue_name`` are in each of ``statuses``."""
        wanted = list(statuses)
        self.catch_up()
        pipe = self.client.pipeline(transaction=False)
        for status in wanted:
            pipe.zcard(keys.status_index(status.value, queue_name=queue_name))
        return dict(zip(wanted, pipe.execute(), strict=True))

    def queues(self) -> set[str]:
        """Every queue the ledger has seen a task on."""
        self.catch_up()
        return set(cast("set[str]", self.client.smembers(keys.known_queues())))

    def task_names(self) -> set[str]:
        """Every task name the ledger has seen."""
        self.catch_up()
        return set(cast("set[str]", self.client.smembers(keys.known_task_names())))

    # Cancellation

    def cancelled_since(self, since: float) -> set[str]:
        """Ids cancelled since ``since`` (UNIX seconds)."""
        return set(
            cast("list[str]", self.client.zrangebyscore(keys.cancelled_ids(), int(since * 1000), "+inf"))
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
        pipe.hset(keys.workers(), worker.id, json.dumps(info))
        pipe.zadd(keys.workers_seen(), {worker.id: int(time.time() * 1000)})
        pipe.execute()

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker that stopped."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(keys.workers(), worker_id)
        pipe.zrem(keys.workers_seen(), worker_id)
        pipe.execute()

    def workers(self, *, seen_within: float = 30.0) -> list[WorkerInfo]:
        """Workers that announced themselves in the last ``seen_within`` seconds."""
        seen = cast(
            "list[tuple[str, float]]",
            self.client.zrangebyscore(
                keys.workers_seen(), int((time.time() - seen_within) * 1000), "+inf", withscores=True
            ),
        )
        if not seen:
            return []
        infos = self.client.hmget(keys.workers(), [worker_id for worker_id, _ in seen])
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
                self.client, [], [keys.LEDGER_PREFIX, int(cutoff * 1000), repr(cutoff), offset, _BATCH]
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
        indexes = [keys.all_index()]
        indexes += [keys.queue_index(queue) for queue in queues]
        indexes += [keys.task_name_index(name) for name in task_names]
        pairs = [keys.task_queue_index(name, queue) for name in task_names for queue in queues]
        if pairs:
            pipe = self.client.pipeline(transaction=False)
            for pair in pairs:
                pipe.exists(pair)
            indexes += [pair for pair, exists in zip(pairs, pipe.execute(), strict=True) if exists]
        for status in TaskStatus:
            indexes.append(keys.status_index(status.value))
            indexes += [keys.status_index(status.value, queue_name=queue) for queue in queues]
            indexes += [keys.status_index(status.value, task_name=name) for name in task_names]
        removed = 0
        for index in indexes:
            offset = 0
            while True:
                looked, dropped = TRIM_INDEX(
                    self.client, [index], [keys.task_record(""), cutoff, offset, _BATCH]
                )
                removed += dropped
                if looked < _BATCH:
                    break
                offset += looked - dropped
        self.client.zremrangebyscore(keys.cancelled_ids(), "-inf", cutoff)
        stale = cast(
            "list[str]", self.client.zrangebyscore(keys.workers_seen(), "-inf", int((now - 86_400) * 1000))
        )
        for worker_id in stale:
            self.forget_worker(worker_id)
        return removed


def record_from_hash(task_id: str, raw: dict[str, str]) -> TaskRecord | None:
    """A record from the hash ``HGETALL`` returned (``None`` for an empty one)."""
    if not raw or "status" not in raw:
        return None
    record = TaskRecord(id=task_id, status=TaskStatus(raw["status"]), attempt=int(raw.get("attempt") or 1))
    for name in _TEXT_FIELDS:
        if name in raw:
            setattr(record, name, raw[name])
    for name in _FLOAT_FIELDS:
        if raw.get(name):
            setattr(record, name, float(raw[name]))
    if "result" in raw:
        record.result = json.loads(raw["result"])
    if "metadata" in raw:
        record.metadata = json.loads(raw["metadata"])
    if "errors" in raw:
        record.errors = json.loads(raw["errors"])
    if raw.get("progress"):
        record.progress = Progress.from_json(raw["progress"])
    if raw.get("message"):
        record.message = json.loads(raw["message"])
    return record


@dataclass(frozen=True)
class _PageQuery:
    """A listing's filters as the index it reads (``None``: status, queue and task name together,
    which have no index of their own), its score range and its slice."""

    index: str | None
    status: str
    low: str
    high: str
    offset: int
    page_size: int

    @classmethod
    def of(
        cls,
        status: TaskStatus | str | None,
        queue_name: str | None,
        task_name: str | None,
        since: float | None,
        until: float | None,
        page: int,
        page_size: int,
    ) -> _PageQuery:
        if page < 1 or page_size < 1:
            raise ValueError("page and page_size start at 1")
        status_value = TaskStatus(status).value if status is not None else None
        index: str | None
        if status_value is not None and queue_name is not None and task_name is not None:
            index = None
        elif status_value is not None:
            index = keys.status_index(status_value, queue_name=queue_name, task_name=task_name)
        elif task_name is not None and queue_name is not None:
            index = keys.task_queue_index(task_name, queue_name)
        elif task_name is not None:
            index = keys.task_name_index(task_name)
        elif queue_name is not None:
            index = keys.queue_index(queue_name)
        else:
            index = keys.all_index()
        return cls(
            index=index,
            status=status_value or "",
            low=f"{since * 1000:.0f}" if since is not None else "-inf",
            high=f"{until * 1000:.0f}" if until is not None else "+inf",
            offset=(page - 1) * page_size,
            page_size=page_size,
        )


def _page_of(reply: list[Any], page: int, page_size: int) -> TaskPage:
    """The page a :data:`~aury_tasks.redis.scripts.LIST_PAGE` reply holds."""
    items = []
    for position in range(2, len(reply), 2):
        flat = reply[position + 1]
        record = record_from_hash(reply[position], dict(zip(flat[::2], flat[1::2], strict=True)))
        if record is not None:  # expired between the index read and now: not in the page
            items.append(record)
    return TaskPage(items=items, total=int(reply[1]), page=page, page_size=page_size)


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
        p50_duration=stats.percentile(histogram, 0.50),
        p95_duration=stats.percentile(histogram, 0.95),
    )
