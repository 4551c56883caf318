"""TaskLedger: a manager's read and control side of the ledger: handles, cancel, retry, queries.

Each :class:`~aury_tasks.TaskManager` holds one (``tm.ledger``); the documented ``tm.`` calls
(``tm.handle``, ``tm.cancel``, ``tm.list_tasks`` …) are delegated to it
(:mod:`aury_tasks.tasks.delegation`). It lives in ``tasks/``, above the ledger package, because
it makes handles and sends retries through the manager. Every method reads the ledger by index
or by id, never by scanning keys; a sync method and its ``_async`` twin run one command plan
(:mod:`aury_tasks.redis.plan`), on the store's client or on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name

from ..core.errors import LedgerUnavailable, TaskRecordNotFound, TaskStateError
from ..core.keys import KeySpace, delay_queue_name
from ..core.status import TaskStatus
from ..ledger import reads
from ..ledger.dead_letters import DeadLetterQueue
from ..ledger.events import (
    ProgressSubscription,
    TaskEvent,
    follow_async,
    outcome,
    wait_for_end,
    wait_for_end_async,
)
from ..ledger.pages import PageQuery, page_of_tasks
from ..ledger.records import Progress, QueueStats, Statistics, TaskPage, TaskRecord, WorkerInfo
from ..ledger.redis_ledger import RedisLedger
from ..redis.plan import Plan, async_client, run, run_async
from ..workflows.handle import GroupHandle, WorkflowHandle
from ..workflows.spec import kind
from ..workflows.state import WORKFLOW_PREFIX, WorkflowState
from .handle import TaskHandle
from .stack import ledger_writer
from .task import enqueue

if TYPE_CHECKING:
    from .manager import TaskManager

T = TypeVar("T")

#: Statuses a task can be retried from by hand.
RETRYABLE = frozenset({TaskStatus.FAILURE, TaskStatus.DEAD, TaskStatus.CANCELLED, TaskStatus.EXPIRED})
#: Message options that belong to one delivery and are dropped when a task is sent again.
_DELIVERY_OPTIONS = frozenset(
    {
        "redis_message_id",
        "retries",
        "traceback",
        "requeue_timestamp",
        "eta",
        "retry_of",
        "expires_at",
        "metadata",
        "deferrals",
    }
)
#: Default window of :meth:`TaskLedger.statistics`.
_DAY = 86_400.0


def _seconds(moment: datetime | float | None) -> float | None:
    if moment is None:
        return None
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


class TaskLedger:
    """Follow, control and query the tasks of one manager through the ledger (``tm.ledger``).

    Parameters:
      manager: the manager whose broker and settings it reads (the broker is built on first
        use, so they are read when needed, not here) and whose handles it makes.
    """

    def __init__(self, manager: TaskManager) -> None:
        self.manager = manager

    def __repr__(self) -> str:
        return f"<TaskLedger of TaskManager {self.manager.name!r}>"

    @property
    def store(self) -> RedisLedger:
        """The ledger store.

        Raises:
          LedgerUnavailable: when task state is not kept (``TASK_TRACK_STATE=false``, or a
            broker that is not Redis and no ``TASK_RESULT_BACKEND_URL``).
        """
        store = ledger_writer(self.manager.broker).store
        if store is None:
            raise LedgerUnavailable(
                "task state is not kept: set TASK_RESULT_BACKEND_URL to a Redis URL"
                " (and TASK_TRACK_STATE=true)"
            )
        return store

    def _run(self, plan: Plan[T]) -> T:
        return run(self.store.client, plan)

    async def _run_async(self, plan: Plan[T]) -> T:
        return await run_async(async_client(self.store.url), plan)

    # One task

    def handle(self, task_id: str) -> TaskHandle:
        """A handle for an id sent earlier (by this process or any other).

        Raises:
          TaskRecordNotFound: when the ledger has no record of it.
        """
        record = self.task_record(task_id)
        return TaskHandle(
            id=task_id, task_name=record.task_name, queue_name=record.queue_name, _manager=self.manager
        )

    def task_record(self, task_id: str) -> TaskRecord:
        """Everything the ledger knows about ``task_id``."""
        return self._run(reads.found(task_id, reads.record(self.store.keys, task_id)))

    def task_status(self, task_id: str) -> TaskStatus:
        """The status of ``task_id`` (one Redis read)."""
        return self._run(reads.found(task_id, reads.status(self.store.keys, task_id)))

    def task_progress(self, task_id: str) -> Progress | None:
        """The last progress report of ``task_id``."""
        return self._run(_last_progress(self.store.keys, task_id))

    def get_result(self, task_id: str, *, timeout: float | None = None) -> Any:
        """Wait for ``task_id`` to end and return its result (see :meth:`TaskHandle.get_result`)."""
        return outcome(wait_for_end(self.store, task_id, timeout))

    def subscribe_progress(self, task_id: str, *, timeout: float | None = None) -> ProgressSubscription:
        """Each progress report of ``task_id`` as it is made, until the task ends.

        Iterate it with ``for`` or ``async for``.
        """
        return ProgressSubscription(self.store, self.store.url, task_id, timeout=timeout)

    def follow_async(self, task_id: str, *, keepalive: float = 15.0) -> AsyncIterator[TaskEvent]:
        """The status changes and progress reports of ``task_id`` as they happen (``async for``).

        The first event is the current record; the last, its final status. An ``idle`` event
        comes after ``keepalive`` seconds without one (what the API's event stream sends as a
        keep-alive comment).

        Raises:
          TaskRecordNotFound: for an unknown id.
        """
        return follow_async(self.store, task_id, keepalive=keepalive)

    async def task_status_async(self, task_id: str) -> TaskStatus:
        """:meth:`task_status` on the running event loop."""
        return await self._run_async(reads.found(task_id, reads.status(self.store.keys, task_id)))

    async def task_progress_async(self, task_id: str) -> Progress | None:
        """:meth:`task_progress` on the running event loop."""
        return await self._run_async(_last_progress(self.store.keys, task_id))

    async def task_record_async(self, task_id: str) -> TaskRecord:
        """:meth:`task_record` on the running event loop."""
        return await self._run_async(reads.found(task_id, reads.record(self.store.keys, task_id)))

    async def get_result_async(self, task_id: str, *, timeout: float | None = None) -> Any:
        """:meth:`get_result` on the running event loop."""
        return outcome(await wait_for_end_async(self.store, task_id, timeout))

    # Control

    def cancel(self, task_id: str) -> bool:
        """Cancel ``task_id``, durably.

        A pending or scheduled task will never run (workers skip it, even after a restart, and
        even a delayed message a worker already holds); a running sync task is interrupted with
        :class:`~aury_tasks.core.errors.TaskInterrupted`, a running async task gets
        ``asyncio.CancelledError`` at its next ``await``. The status is ``cancelled`` at once.

        Returns:
          bool: ``True`` if cancelled now, ``False`` if the task had already ended.

        Raises:
          TaskRecordNotFound: for an unknown id.
        """
        store = self.store
        status, task_name = store.client.hmget(store.keys.task_record(task_id), ["status", "task_name"])
        if status is None:
            raise TaskRecordNotFound.for_id(task_id)
        if str(task_name).startswith(WORKFLOW_PREFIX):
            return self.workflow(task_id).cancel()
        return store.transition(
            task_id,
            TaskStatus.CANCELLED,
            attempt=0,
            cancel=True,
            finished_at=time.time(),
            reason="cancelled by request",
        )

    def workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle for a workflow sent earlier (by this process or any other).

        Raises:
          TaskRecordNotFound: when the ledger holds no workflow with that id.
        """

        root = WorkflowState(self.store.client, self.store.keys, self.store.ttl_ms).tree(workflow_id)
        if root is None:
            raise TaskRecordNotFound(f"no workflow with id {workflow_id} (never sent, or its record expired)")
        handle_type = GroupHandle if root["k"] == "group" else WorkflowHandle
        return handle_type(id=workflow_id, kind=kind(root), _manager=self.manager)

    async def cancel_async(self, task_id: str) -> bool:
        """:meth:`cancel` without blocking the event loop."""
        return await asyncio.to_thread(self.cancel, task_id)

    def retry(self, task_id: str) -> TaskHandle:
        """Send a failed, dead, cancelled or expired task again, with the same arguments.

        The new task has a new id; its record's ``retry_of`` and the old record's
        ``retried_by`` link the two. A dead letter of the old task is removed.

        Raises:
          TaskRecordNotFound: for an unknown id.
          TaskStateError: when the task has not ended that way (pending, running, succeeded).
        """
        record = self.task_record(task_id)
        if record.status not in RETRYABLE:
            raise TaskStateError(
                f"task {task_id} is {record.status.value}; only failed, dead, cancelled or expired"
                " tasks can be retried"
            )
        if not record.message:
            raise TaskStateError(f"task {task_id} has no stored message to send again")
        handle = self.resend(record.message, retry_of=task_id, metadata=record.metadata)
        dead_letter_id = cast(
            "str | None", self.store.client.hget(self.store.keys.task_record(task_id), "dead_letter_id")
        )
        if dead_letter_id and isinstance(self.manager.broker, RedisBroker):
            self.dead_letters(q_name(record.queue_name)).remove(dead_letter_id)
        return handle

    def resend(
        self, message: dict[str, Any], *, retry_of: str, metadata: dict[str, Any] | None = None
    ) -> TaskHandle:
        """Send a stored message again as a new task linked to ``retry_of``."""
        options = {k: v for k, v in (message.get("options") or {}).items() if k not in _DELIVERY_OPTIONS}
        options["retry_of"] = retry_of
        if metadata:
            options["metadata"] = metadata
        new: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=q_name(message["queue_name"]),
            actor_name=message["actor_name"],
            args=tuple(message.get("args") or ()),
            kwargs=dict(message.get("kwargs") or {}),
            options=options,
        )
        handle = enqueue(self.manager, new)
        with contextlib.suppress(LedgerUnavailable):
            self.store.set_fields(retry_of, retried_by=handle.id)
        return handle

    def dead_letters(self, queue_name: str | None = None) -> DeadLetterQueue:
        """The dead letters of ``queue_name`` (default: ``TASK_QUEUE_NAME``)."""
        return DeadLetterQueue(self.manager, queue_name or self.manager.settings.queue_name)

    # Queries

    def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        queue: str | None = None,
        task_name: str | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> TaskPage:
        """Task records, newest first, filtered by any of status, queue, task name and enqueue time.

        Returns:
          TaskPage: ``items`` of this page and the ``total`` matching.
        """
        return self._run(self._page(status, queue, task_name, since, until, page, page_size))

    # The same parameters as list_tasks, laid out compactly: the two run one plan.
    async def list_tasks_async(self, *, status: TaskStatus | str | None = None, queue: str | None = None,
                               task_name: str | None = None, since: datetime | float | None = None,
                               until: datetime | float | None = None, page: int = 1,
                               page_size: int = 50) -> TaskPage:  # fmt: skip
        """:meth:`list_tasks` on the running event loop (one round trip)."""
        return await self._run_async(self._page(status, queue, task_name, since, until, page, page_size))

    def _page(
        self,
        status: TaskStatus | str | None,
        queue: str | None,
        task_name: str | None,
        since: datetime | float | None,
        until: datetime | float | None,
        page: int,
        page_size: int,
    ) -> Plan[TaskPage]:
        store = self.store
        query = PageQuery.of(store.keys, status, queue, task_name, _seconds(since), _seconds(until), page,
                             page_size)  # fmt: skip
        return page_of_tasks(query, store.ttl_ms)

    def statistics(
        self,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
        *,
        queue: str | None = None,
        task_name: str | None = None,
    ) -> Statistics:
        """Counts, success rate and durations of the tasks that ended between ``start`` and ``end``.

        Defaults to the last 24 hours. Reads time-bucketed counters: as fast for a million
        tasks as for ten.
        """
        end_s = _seconds(end) or time.time()
        start_s = _seconds(start) or end_s - _DAY
        return self.store.statistics(start_s, end_s, queue_name=queue, task_name=task_name)

    def statistics_series(
        self,
        start: datetime | float,
        end: datetime | float,
        points: int,
        *,
        queue: str | None = None,
        task_name: str | None = None,
    ) -> list[Statistics]:
        """:meth:`statistics` of ``points`` equal slices from ``start`` to ``end`` (one round trip):
        throughput and failures over time, for a chart."""
        start_s, end_s = _seconds(start), _seconds(end)
        assert start_s is not None and end_s is not None
        return self.store.statistics_series(start_s, end_s, points, queue_name=queue, task_name=task_name)

    def queue_stats(self, queue: str) -> QueueStats:
        """How ``queue`` stands now: waiting, delayed, running, dead, done, and its workers."""
        store = self.store
        counts = store.count_by_status(
            queue,
            [
                TaskStatus.PENDING,
                TaskStatus.SCHEDULED,
                TaskStatus.RETRYING,
                TaskStatus.STARTED,
                TaskStatus.SUCCESS,
                TaskStatus.FAILURE,
                TaskStatus.DEAD,
            ],
        )
        broker = self.manager.broker
        if isinstance(broker, RedisBroker):
            keys = KeySpace(broker.namespace)  # the broker's keys (its namespace is the key prefix)
            pipe = broker.client.pipeline(transaction=False)
            pipe.llen(keys.broker_queue(queue))
            pipe.zcard(
                keys.priority_queue(queue)
            )  # waiting with a priority (aury_tasks.broker.redis.priority)
            pipe.hlen(keys.broker_messages(delay_queue_name(queue)))
            pipe.zcard(keys.dead_letters(queue))
            listed, prioritized, scheduled, dead = pipe.execute()
            pending = listed + prioritized
        else:
            pending = counts[TaskStatus.PENDING]
            scheduled = counts[TaskStatus.SCHEDULED] + counts[TaskStatus.RETRYING]
            dead = counts[TaskStatus.DEAD]
        workers = sum(1 for worker in store.workers() if queue in worker.queues)
        return QueueStats(
            queue_name=queue,
            pending=pending,
            scheduled=scheduled,
            running=counts[TaskStatus.STARTED],
            dead=dead,
            succeeded=counts[TaskStatus.SUCCESS],
            failed=counts[TaskStatus.FAILURE],
            workers=workers,
        )

    def queues(self) -> list[QueueStats]:
        """:meth:`queue_stats` of every queue known to the ledger, the workers or this process."""
        store = self.store
        names = store.queues() | {queue for worker in store.workers() for queue in worker.queues}
        names |= {q_name(name) for name in self.manager.broker.get_declared_queues()}
        return [self.queue_stats(name) for name in sorted(names)]

    def workers(self) -> list[WorkerInfo]:
        """Worker processes seen in the last 30 seconds."""
        return self.store.workers()

    def cleanup(self, older_than: timedelta | float) -> int:
        """Delete the records of tasks that ended more than ``older_than`` (seconds) ago.

        Returns:
          int: how many records were deleted.
        """
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
        return self.store.cleanup(seconds)


def _last_progress(keys: KeySpace, task_id: str) -> Plan[Progress | None]:
    """The last progress report of ``task_id`` (``None`` before the first one)."""
    snapshot = yield from reads.found(task_id, reads.progress(keys, task_id))
    return snapshot[1]
