"""What the ledger holds: task records, progress, pages of records, statistics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.status import TaskStatus


@dataclass(frozen=True, slots=True)
class Progress:
    """A task's last progress report."""

    #: 0 to 100.
    percent: float
    message: str = ""
    step: int | None = None
    total_steps: int | None = None
    #: UNIX time of the report.
    updated_at: float = 0.0

    def to_json(self) -> str:
        """The JSON stored in the record and published to subscribers."""
        return json.dumps(
            {"percent": self.percent, "message": self.message, "step": self.step,
             "total_steps": self.total_steps, "updated_at": self.updated_at},
            separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str | bytes) -> Progress:
        """Read a progress report back."""
        data = json.loads(text)
        return cls(
            percent=float(data.get("percent", 0)),
            message=str(data.get("message") or ""),
            step=data.get("step"),
            total_steps=data.get("total_steps"),
            updated_at=float(data.get("updated_at") or 0),
        )


@dataclass
class TaskRecord:
    """Everything the ledger knows about one task."""

    id: str
    status: TaskStatus
    #: 1 for the first run, 2 for the first retry …
    attempt: int = 1
    task_name: str = ""
    queue_name: str = ""
    #: Times as UNIX seconds.
    enqueued_at: float | None = None
    #: When a delayed task becomes due.
    eta: float | None = None
    #: After this moment the task is not run any more (status ``expired``).
    expires_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: ``host:pid`` of the worker that ran (or runs) it.
    worker: str = ""
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    #: One entry per failed attempt: ``{"attempt", "type", "message", "at"}``.
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Why a task was dead-lettered or not run (``unknown task``, ``max_age`` …).
    reason: str = ""
    progress: Progress | None = None
    #: What the caller passed as ``metadata=`` at send time.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The id of the task this one re-runs (``tm.retry``, dead-letter requeue).
    retry_of: str = ""
    #: The id of the task that re-ran this one.
    retried_by: str = ""
    #: The id of the workflow this task is a step of (``aum status`` on it shows the tree).
    workflow_id: str = ""
    #: The message as sent (task name, queue, arguments, options), for retries.
    message: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def is_final(self) -> bool:
        """Whether the task has ended."""
        return self.status.is_final

    @property
    def args(self) -> list[Any]:
        """The positional arguments it was sent with."""
        return list(self.message.get("args") or [])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments it was sent with."""
        return dict(self.message.get("kwargs") or {})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (status as its string, progress as a dict)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "message"}
        data["status"] = self.status.value
        data["progress"] = json.loads(self.progress.to_json()) if self.progress else None
        data["duration"] = self.duration
        data["args"], data["kwargs"] = self.args, self.kwargs
        return data


@dataclass(frozen=True)
class TaskPage:
    """One page of :meth:`TaskManager.list_tasks`, newest first."""

    items: list[TaskRecord]
    #: How many records match the filters, on every page.
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages there are."""
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class Statistics:
    """Tasks that ended in a time window; durations in seconds (p50/p95 within about 12 %)."""

    start: float
    end: float
    total: int
    succeeded: int
    failed: int
    cancelled: int
    expired: int
    dead: int
    #: ``succeeded / total`` (0.0 when nothing ended).
    success_rate: float
    average_duration: float | None
    p50_duration: float | None
    p95_duration: float | None


@dataclass(frozen=True)
class QueueStats:
    """How one queue stands now."""

    queue_name: str
    #: Waiting in the queue.
    pending: int
    #: Delayed (an eta, or a retry's backoff).
    scheduled: int
    #: Being run by a worker (tasks past their first 0.1 to 0.15 s).
    running: int
    #: In the dead-letter queue.
    dead: int
    #: Ended with success / failure, among the records still kept.
    succeeded: int
    failed: int
    #: Workers that served the queue in the last 30 s.
    workers: int


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process as it last announced itself."""

    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: float
    last_seen: float


class LedgerBackend(Protocol):
    """A ledger backend: atomic forward-only status writes and reads by id."""

    def transition(self, task_id: str, status: TaskStatus, *, attempt: int = 1, **fields: Any) -> bool:
        """Move ``task_id`` to ``status`` if that is forward (see :mod:`aury_tasks.core.status`).

        Returns:
          bool: whether the write was applied.
        """
        ...

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or ``None`` if there is none (never sent, or expired)."""
        ...
