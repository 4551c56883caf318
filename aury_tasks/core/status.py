"""Task statuses and the order in which a task may move through them.

A task's record only ever moves forward. Each status write carries the attempt it belongs to,
and a write is applied only when its ``(attempt, phase)`` comes after the record's, or when it
ends the task; once a task has ended, nothing changes it. So a late ``pending`` (its enqueue
write delayed behind the worker's) never overwrites ``success``, and a ``started`` of attempt 1
never overwrites the ``retrying`` that closed that attempt, while attempt 2 can start again. A
delayed task moves from ``scheduled`` to ``pending`` when it becomes due.
"""

from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    """Where a task is in its life."""

    #: Enqueued, waiting for a worker.
    PENDING = "pending"
    #: Enqueued with a delay or an eta that has not come yet.
    SCHEDULED = "scheduled"
    #: A worker is running it.
    STARTED = "started"
    #: An attempt failed; the next one is scheduled.
    RETRYING = "retrying"
    #: It returned; the result is stored.
    SUCCESS = "success"
    #: It failed for good (out of retries, or a PermanentError).
    FAILURE = "failure"
    #: Cancelled before it finished.
    CANCELLED = "cancelled"
    #: Dequeued after its ``expires`` moment, so not run.
    EXPIRED = "expired"
    #: Moved to the dead-letter queue.
    DEAD = "dead"

    @property
    def phase(self) -> int:
        """Order of this status within one attempt: scheduled, pending, running, retrying, ended."""
        return _PHASES[self]

    @property
    def is_final(self) -> bool:
        """Whether the task has ended: nothing changes its record any more."""
        return self in FINAL_STATUSES

    def may_follow(self, current: TaskStatus, *, attempt: int, current_attempt: int) -> bool:
        """Whether a write of this status (for ``attempt``) may replace ``current``.

        This is the rule the ledger's atomic write applies in Redis; it is spelled here so
        that it can be read, tested and documented in one place.
        """
        if current.is_final:
            return False
        if self.is_final:
            return True
        return (attempt, self.phase) > (current_attempt, current.phase)


#: Statuses that end a task.
FINAL_STATUSES = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCELLED, TaskStatus.EXPIRED, TaskStatus.DEAD}
)

_PHASES = {
    TaskStatus.SCHEDULED: 0,
    TaskStatus.PENDING: 1,
    TaskStatus.STARTED: 2,
    TaskStatus.RETRYING: 3,
    TaskStatus.SUCCESS: 4,
    TaskStatus.FAILURE: 4,
    TaskStatus.CANCELLED: 4,
    TaskStatus.EXPIRED: 4,
    TaskStatus.DEAD: 4,
}
