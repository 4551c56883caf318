"""The task ledger's storage: one record per task, written forward-only, plus its indexes."""

from __future__ import annotations

from .base import Progress, QueueStats, Statistics, TaskPage, TaskRecord, TaskStore, WorkerInfo
from .redis import RedisTaskStore
from .scripts import Write

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
