"""The task ledger's storage: one record per task, written forward-only, plus its indexes."""

from __future__ import annotations

from ..redis.scripts import Write
from .records import LedgerBackend, Progress, QueueStats, Statistics, TaskPage, TaskRecord, WorkerInfo
from .redis_ledger import RedisLedger

__all__ = [
    "LedgerBackend",
    "Progress",
    "QueueStats",
    "RedisLedger",
    "Statistics",
    "TaskPage",
    "TaskRecord",
    "WorkerInfo",
    "Write",
]
