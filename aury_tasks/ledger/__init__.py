"""The task ledger's storage: one record per task, written forward-only, plus its indexes."""

from __future__ import annotations

from ..redis.scripts import Write
from .records import Progress, QueueStats, Statistics, TaskPage, TaskRecord, TaskStore, WorkerInfo
from .store import RedisTaskStore

__all__ = [
    "Progress",
    "QueueStats",
    "RedisTaskStore",
    "Statistics",
    "TaskPage",
    "TaskRecord",
    "TaskStore",
    "WorkerInfo",
    "Write",
]
