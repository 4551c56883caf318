"""Pages of task records: the index a listing reads, the send backlog caught up first.

A listing by any filter but status, queue *and* task name together is one ``LIST_PAGE`` script
call (the page of ids read from one index with their records, the backlog of sends indexed
first); those three together have no index of their own and are walked
(:func:`_ids_walked`). Every read here is a command plan (:mod:`aury_tasks.redis.plan`), run
by :meth:`RedisLedger.list_tasks` and, on the event loop, by ``list_tasks_async``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..core.keys import KeySpace
from ..core.status import TaskStatus
from ..redis.plan import Batch, Command, Plan
from ..redis.scripts import INDEX_BACKLOG, LIST_PAGE, Write
from . import reads
from .records import TaskPage

#: Index entries read per round trip when the three filters together are walked.
_BATCH = 500
#: Backlog ids indexed per script call (a few milliseconds of the server's time).
INDEX_BATCH = 1_000


@dataclass(frozen=True)
class PageQuery:
    """A listing's filters as the index it reads (``None``: status, queue and task name together,
    which have no index of their own), its score range and its slice, under the keys of ``keys``."""

    keys: KeySpace
    index: str | None
    status: str
    queue_name: str
    task_name: str
    low: str
    high: str
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        """How many matching records come before the page."""
        return (self.page - 1) * self.page_size

    @classmethod
    def of(
        cls,
        keys: KeySpace,
        status: TaskStatus | str | None,
        queue_name: str | None,
        task_name: str | None,
        since: float | None,
        until: float | None,
        page: int,
        page_size: int,
    ) -> PageQuery:
        """The query of a listing's filters (times in UNIX seconds).

        Raises:
          ValueError: for a page or page size below 1, or an unknown status.
        """
        if page < 1 or page_size < 1:
            raise ValueError("page and page_size start at 1")
        status_value = TaskStatus(status).value if status is not None else None
        return cls(
            keys=keys,
            index=_index(keys, status_value, queue_name, task_name),
            status=status_value or "",
            queue_name=queue_name or "",
            task_name=task_name or "",
            low=f"{since * 1000:.0f}" if since is not None else "-inf",
            high=f"{until * 1000:.0f}" if until is not None else "+inf",
            page=page,
            page_size=page_size,
        )


def _index(keys: KeySpace, status: str | None, queue_name: str | None, task_name: str | None) -> str | None:
    if status is not None and queue_name is not None and task_name is not None:
        return None
    if status is not None:
        return keys.status_index(status, queue_name=queue_name, task_name=task_name)
    if task_name is not None and queue_name is not None:
        return keys.task_queue_index(task_name, queue_name)
    if task_name is not None:
        return keys.task_name_index(task_name)
    if queue_name is not None:
        return keys.queue_index(queue_name)
    return keys.all_index()


def page_of_tasks(query: PageQuery, ttl_ms: int) -> Plan[TaskPage]:
    """The page ``query`` asks for, newest (by enqueue time) first; the backlog indexed first."""
    if query.index is None:
        yield from catch_up(query.keys, ttl_ms)
        matching = yield from _ids_walked(query)
        items = yield from reads.records(query.keys, matching[query.offset : query.offset + query.page_size])
        return TaskPage(items=items, total=len(matching), page=query.page, page_size=query.page_size)
    reply = yield _page_call(query, ttl_ms)
    if reply[0]:  # a backlog bigger than one call indexes
        yield from catch_up(query.keys, ttl_ms)
        reply = yield _page_call(query, ttl_ms)
    return _page_of(reply, query.page, query.page_size)


def catch_up(keys: KeySpace, ttl_ms: int, limit: int | None = None) -> Plan[int]:
    """Index the records written by sends since the last catch-up (see
    :meth:`RedisLedger.catch_up`); return how many ids were taken from the backlog."""
    done = 0
    while limit is None or done < limit:
        count = INDEX_BATCH if limit is None else min(INDEX_BATCH, limit - done)
        popped, waiting = yield Write(
            INDEX_BACKLOG, [], [keys.ledger_prefix, count, ttl_ms, int(time.time() * 1000)]
        )
        done += popped
        if not waiting:
            break
    return done


def _page_call(query: PageQuery, ttl_ms: int) -> Write:
    args = [query.keys.ledger_prefix, ttl_ms, int(time.time() * 1000), query.index, query.low, query.high,
            query.offset, query.page_size, INDEX_BATCH]  # fmt: skip
    return Write(LIST_PAGE, [], args)


def _page_of(reply: list[Any], page: int, page_size: int) -> TaskPage:
    """The page a :data:`~aury_tasks.redis.scripts.LIST_PAGE` reply holds."""
    items = []
    for position in range(2, len(reply), 2):
        flat = reply[position + 1]
        record = reads.record_from_hash(reply[position], dict(zip(flat[::2], flat[1::2], strict=True)))
        if record is not None:  # expired between the index read and now: not in the page
            items.append(record)
    return TaskPage(items=items, total=int(reply[1]), page=page, page_size=page_size)


def _ids_walked(query: PageQuery) -> Plan[list[str]]:
    # Status, queue and task name together have no index of their own: walk the smaller of
    # (the task's ids in this status) and (the task's ids on this queue), newest first, and
    # keep the ids that match the other filter.
    keys = query.keys
    by_status = keys.status_index(query.status, task_name=query.task_name)
    by_queue = keys.task_queue_index(query.task_name, query.queue_name)
    in_status, on_queue = yield Batch(
        [
            Command("zcount", by_status, query.low, query.high),
            Command("zcount", by_queue, query.low, query.high),
        ]
    )
    index, field, wanted = (
        (by_status, "queue_name", query.queue_name)
        if in_status <= on_queue
        else (by_queue, "status", query.status)
    )
    matching: list[str] = []
    upper = query.high
    while True:
        # By score, not offset, so each batch costs the same however deep the walk is.
        batch: list[tuple[str, float]] = yield Command(
            "zrevrangebyscore", index, upper, query.low, start=0, num=_BATCH, withscores=True
        )
        if not batch:
            return matching
        matching += yield from _matching(keys, [task_id for task_id, _ in batch], field, wanted)
        if len(batch) < _BATCH:
            return matching
        last_score = batch[-1][1]
        upper = f"({last_score:.0f}"
        # Ids sharing the last score are read again from the next batch's start: take them now.
        ties: list[str] = yield Command("zrangebyscore", index, last_score, last_score)
        seen = {task_id for task_id, score in batch if score == last_score}
        extra = [task_id for task_id in reversed(ties) if task_id not in seen]
        if extra:
            matching += yield from _matching(keys, extra, field, wanted)


def _matching(keys: KeySpace, task_ids: list[str], field: str, wanted: str) -> Plan[list[str]]:
    """Those of ``task_ids`` whose record's ``field`` is ``wanted`` (one round trip)."""
    values = yield Batch([Command("hget", keys.task_record(task_id), field) for task_id in task_ids])
    return [task_id for task_id, value in zip(task_ids, values, strict=True) if value == wanted]
