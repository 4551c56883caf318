"""Following a task as it happens: waiting for its end and subscribing to its progress.

Every status change and progress report of a task is published on its event channel by the
same atomic script that writes it. A waiter subscribes first and reads the record second, so
nothing can slip between the two; it then sleeps on the subscription, never polling. Should
the connection drop, it subscribes again and re-reads the record.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from ..core.errors import TaskCancelled, TaskExpired, TaskFailed, TaskRecordNotFound
from ..core.keys import KeySpace
from ..core.status import TaskStatus
from ..redis.plan import (
    Command,
    Emit,
    Listen,
    Plan,
    Subscribe,
    async_client,
    run,
    run_async,
    stream,
    stream_async,
)
from . import reads
from .records import Progress, TaskRecord
from .redis_ledger import RedisLedger

#: Longest sleep on a subscription before the record is read again (a safety net, not a poll).
_RECHECK = 5.0


def outcome(record: TaskRecord) -> Any:
    """The result of an ended task, or the error it ended with.

    Raises:
      TaskFailed: the task failed or was dead-lettered (``TaskCancelled``, ``TaskExpired`` for those).
    """
    status = record.status
    if status is TaskStatus.SUCCESS:
        return record.result
    what = f"task {record.id} ({record.task_name})"
    if status is TaskStatus.CANCELLED:
        raise TaskCancelled(f"{what} was cancelled", error_type="Cancelled")
    if status is TaskStatus.EXPIRED:
        raise TaskExpired(f"{what} expired before it ran", error_type="Expired")
    if status is TaskStatus.DEAD:
        raise TaskFailed(f"{what} was dead-lettered: {record.reason or record.error_message}",
                         error_type=record.error_type or "DeadLettered",
                         error_message=record.error_message or record.reason)  # fmt: skip
    raise TaskFailed(f"{what} failed: {record.error_type}: {record.error_message}",
                     error_type=record.error_type, error_message=record.error_message)  # fmt: skip


def _required(keys: KeySpace, task_id: str) -> Plan[TaskRecord]:
    return reads.found(task_id, reads.record(keys, task_id))


def _is_final_event(data: str) -> bool:
    return data.startswith("s:") and TaskStatus(data[2:]).is_final


def _until_end(
    keys: KeySpace, task_id: str, timeout: float | None, deadline: float | None
) -> Plan[TaskRecord]:
    """Subscribe to the task's events, read its record, sleep on the subscription until it ends."""
    yield Subscribe(keys.task_events(task_id))
    record = yield from _required(keys, task_id)
    while not record.is_final:
        wait = _RECHECK if deadline is None else min(_RECHECK, deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError(f"task {task_id} did not finish within {timeout:g} s")
        message = yield Listen(wait)
        if message is None or _is_final_event(message["data"]):
            record = yield from _required(keys, task_id)
    return record


def wait_for_end(store: RedisLedger, task_id: str, timeout: float | None) -> TaskRecord:
    """Block until ``task_id`` ends; return its final record.

    Should the connection drop, it subscribes again and re-reads the record.

    Raises:
      TaskRecordNotFound: for an unknown id.
      TimeoutError: when ``timeout`` seconds pass first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return run(store.client, _until_end(store.keys, task_id, timeout, deadline))
        except redis.ConnectionError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


async def wait_for_end_async(store: RedisLedger, task_id: str, timeout: float | None) -> TaskRecord:
    """:func:`wait_for_end` on the running event loop, through a client of ``store``'s URL."""
    deadline = None if timeout is None else time.monotonic() + timeout
    return await run_async(async_client(store.url), _until_end(store.keys, task_id, timeout, deadline))


class ProgressSubscription:
    """Every progress report of one task, in order, as it is made; ends when the task ends.

    Iterate it in sync code (``for progress in sub``) or async code (``async for progress in sub``).
    A report made before the subscription is yielded first. After the end, :attr:`status` holds
    the task's final status.

    >>> for progress in tm.subscribe_progress(handle.id):
    ...     print(f"{progress.percent:.0f}% {progress.message}")
    """

    def __init__(self, store: RedisLedger, url: str, task_id: str, *, timeout: float | None = None) -> None:
        self.store = store
        self.url = url
        self.task_id = task_id
        self.timeout = timeout
        #: The task's status: final once iteration has ended.
        self.status: TaskStatus | None = None

    def _first(self, status: TaskStatus, progress: Progress | None) -> tuple[float, Progress | None]:
        self.status = status
        return (progress.updated_at if progress else 0.0), progress

    def __iter__(self) -> Iterator[Progress]:
        return stream(self.store.client, self._reports())

    def __aiter__(self) -> AsyncIterator[Progress]:
        return stream_async(async_client(self.url), self._reports())

    def _reports(self) -> Plan[None]:
        """The reports as a plan: subscribe, read the last one, then each one published."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        keys = self.store.keys
        yield Subscribe(keys.task_events(self.task_id))
        snapshot = yield from reads.progress(keys, self.task_id)
        if snapshot is None:
            raise TaskRecordNotFound.for_id(self.task_id)
        seen, progress = self._first(*snapshot)
        if progress is not None:
            yield Emit(progress)
        while self.status is not None and not self.status.is_final:
            wait = _RECHECK if deadline is None else min(_RECHECK, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError(f"task {self.task_id} did not finish within {self.timeout:g} s")
            message = yield Listen(wait)
            if message is None:
                self.status = yield from reads.status(keys, self.task_id)
                continue
            seen, progress = self._handle(message["data"], seen)
            if progress is not None:
                yield Emit(progress)

    def _handle(self, data: str, seen: float) -> tuple[float, Progress | None]:
        if data.startswith("s:"):
            self.status = TaskStatus(data[2:])
            return seen, None
        progress = Progress.from_json(data[2:])
        if progress.updated_at <= seen:
            return seen, None
        return progress.updated_at, progress


@dataclass(frozen=True)
class TaskEvent:
    """One thing that happened to a followed task (:meth:`TaskManager.follow_async`).

    ``kind`` is ``status`` (``record`` is the task's record after a status change, and the first
    event is always one), ``progress`` (``progress`` is the new report) or ``idle`` (nothing
    happened for ``keepalive`` seconds: a chance to keep a connection open).
    """

    kind: str
    record: TaskRecord | None = None
    progress: Progress | None = None


async def follow_async(
    store: RedisLedger, task_id: str, *, keepalive: float = 15.0
) -> AsyncIterator[TaskEvent]:
    """The events of ``task_id`` as they happen, ending after its final status.

    Subscribes first and reads the record second, like :func:`wait_for_end`, so no change slips
    between the two; a status change is reported with the record read after it.

    Raises:
      TaskRecordNotFound: for an unknown id (or a record that expired meanwhile).
    """
    # Closed with this generator (a client gone from the API's event stream), not when collected.
    plan = _events(store.keys, task_id, keepalive)
    async with contextlib.aclosing(stream_async(async_client(store.url), plan)) as events:
        async for event in events:
            yield event


def _events(keys: KeySpace, task_id: str, keepalive: float) -> Plan[None]:
    """The plan of :func:`follow_async`: each event emitted as it happens."""
    yield Subscribe(keys.task_events(task_id))
    record = yield from _required(keys, task_id)
    yield Emit(TaskEvent("status", record=record))
    status, seen = record.status, record.progress.updated_at if record.progress else 0.0
    idle_since = time.monotonic()
    while not status.is_final:
        message = yield Listen(min(_RECHECK, keepalive))
        if message is None:
            current = yield Command("hget", keys.task_record(task_id), "status")
            if current is None:
                raise TaskRecordNotFound.for_id(task_id)
            if current == status.value and time.monotonic() - idle_since < keepalive:
                continue
            message = {"data": f"s:{current}"}
        idle_since = time.monotonic()
        data = str(message["data"])
        if data.startswith("p:"):
            progress = Progress.from_json(data[2:])
            if progress.updated_at > seen:
                seen = progress.updated_at
                yield Emit(TaskEvent("progress", progress=progress))
            continue
        record = yield from _required(keys, task_id)
        if record.status is status:
            yield Emit(TaskEvent("idle"))
            continue
        status = record.status
        yield Emit(TaskEvent("status", record=record))
