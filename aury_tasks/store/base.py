"""What a task record holds, and what a ledger store can do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..status import TaskStatus


@dataclass
class TaskRecord:
    """Everything the ledger knows about one task."""

    id: str
    status: TaskStatus
    attempt: int = 1
    task_name: str = ""
    queue_name: str = ""
    #: Times as UNIX seconds.
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: ``host:pid`` of the worker that ran (or runs) it.
    worker: str = ""
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class TaskStore(Protocol):
    """A ledger backend: atomic forward-only status writes and reads by id."""

    def transition(self, task_id: str, status: TaskStatus, *, attempt: int = 1, **fields: Any) -> bool:
        """Move ``task_id`` to ``status`` if that is forward (see :mod:`aury_tasks.status`).

        Returns:
          bool: whether the write was applied.
        """
        ...

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or ``None`` if there is none (never sent, or expired)."""
        ...
