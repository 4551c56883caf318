"""The task ledger's storage: one record per task, written forward-only.

Not wired into the worker yet: the middleware that writes records (and folds its writes into
the broker's own round trips) comes with the task-state issue.
"""

from __future__ import annotations

from .base import TaskRecord, TaskStore
from .redis import RedisTaskStore

__all__ = ["RedisTaskStore", "TaskRecord", "TaskStore"]
