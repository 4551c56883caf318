"""Reads of the ledger by task id, as command plans, and a record decoded from its hash.

Each read is written once, as a :mod:`~aury_tasks.redis.plan`, and run on a sync client
(:class:`~aury_tasks.ledger.redis_ledger.RedisLedger`) or on the event loop
(:class:`~aury_tasks.tasks.ledger.TaskLedger`'s ``_async`` methods).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TypeVar

from ..core.errors import TaskRecordNotFound
from ..core.keys import KeySpace
from ..core.status import TaskStatus
from ..redis.plan import Batch, Command, Plan
from .records import Progress, TaskRecord

T = TypeVar("T")

#: Record fields kept as text, and as UNIX seconds.
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
_FLOAT_FIELDS = ("enqueued_at", "eta", "expires_at", "started_at", "finished_at")


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


def record(keys: KeySpace, task_id: str) -> Plan[TaskRecord | None]:
    """The record of ``task_id``, or ``None`` (one ``HGETALL``)."""
    raw = yield Command("hgetall", keys.task_record(task_id))
    return record_from_hash(task_id, raw)


def records(keys: KeySpace, task_ids: Iterable[str]) -> Plan[list[TaskRecord]]:
    """The records of ``task_ids`` that still exist, in the same order (one round trip)."""
    ids = list(task_ids)
    raws = yield Batch([Command("hgetall", keys.task_record(task_id)) for task_id in ids])
    decoded = (record_from_hash(task_id, raw) for task_id, raw in zip(ids, raws, strict=True))
    return [one for one in decoded if one is not None]


def status(keys: KeySpace, task_id: str) -> Plan[TaskStatus | None]:
    """Only the status of ``task_id`` (one ``HGET``), or ``None`` without a record."""
    value = yield Command("hget", keys.task_record(task_id), "status")
    return TaskStatus(value) if value else None


def progress(keys: KeySpace, task_id: str) -> Plan[tuple[TaskStatus, Progress | None] | None]:
    """The status and last progress report of ``task_id`` (one ``HMGET``), or ``None`` without a record."""
    value, report = yield Command("hmget", keys.task_record(task_id), ["status", "progress"])
    if not value:
        return None
    return TaskStatus(value), Progress.from_json(report) if report else None


def found(task_id: str, read: Plan[T | None]) -> Plan[T]:
    """What ``read`` of ``task_id`` returns, which must be there.

    Raises:
      TaskRecordNotFound: when the ledger has no record of ``task_id``.
    """
    value = yield from read
    if value is None:
        raise TaskRecordNotFound.for_id(task_id)
    return value
