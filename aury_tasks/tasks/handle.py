"""TaskHandle: what ``task.send()`` returns, to follow the task to its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.instances import task_managers
from ..core.status import TaskStatus

if TYPE_CHECKING:
    from ..ledger.events import ProgressSubscription
    from ..ledger.records import Progress, TaskRecord
    from .manager import TaskManager


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


@dataclass(slots=True)
class TaskHandle:
    """A sent task: its id, name and queue, and the way to its status, progress and result.

    ``id`` is the Dramatiq message id, the same on every retry of the task. Rebuild a handle
    from an id with ``tm.handle(task_id)``. In eager mode the handle carries the value the task
    returned and the task counts as succeeded.

    >>> handle = send_welcome_email.send(user_id="42")
    >>> handle.status()
    <TaskStatus.PENDING: 'pending'>
    >>> handle.get_result(timeout=30)
    {'sent': True}
    """

    #: The task's id (Dramatiq's message id).
    id: str
    #: The registered task name, e.g. ``modules.emails.tasks.send_welcome_email``.
    task_name: str
    #: The queue the message went to.
    queue_name: str
    #: When a delayed task becomes due (``None`` when it was sent to run now).
    eta: datetime | None = None
    _eager_result: Any = field(default=_UNSET, repr=False, compare=False)
    _manager: TaskManager | None = field(default=None, repr=False, compare=False)

    @property
    def eager(self) -> bool:
        """Whether the task already ran inline (``TASK_RUN_MODE=eager``)."""
        return self._eager_result is not _UNSET

    @property
    def eager_result(self) -> Any:
        """The value an eagerly run task returned.

        Raises:
          RuntimeError: when the task was sent to a broker, not run inline.
        """
        if not self.eager:
            raise RuntimeError(f"task {self.id} was sent to the broker; it has no inline result")
        return self._eager_result

    @property
    def manager(self) -> TaskManager:
        """The manager whose ledger this handle reads."""
        if self._manager is None:
            self._manager = task_managers.get()
        return self._manager

    # Sync

    def status(self) -> TaskStatus:
        """The task's status now.

        Raises:
          TaskRecordNotFound: when the ledger has no record of it (expired).
          LedgerUnavailable: when task state is not kept.
        """
        if self.eager:
            return TaskStatus.SUCCESS
        return self.manager.task_status(self.id)

    def record(self) -> TaskRecord:
        """Everything the ledger knows about the task."""
        return self.manager.task_record(self.id)

    def get_result(self, timeout: float | None = None) -> Any:
        """Wait for the task to end and return its result.

        Blocks on a subscription to the task's events, not by polling.

        Parameters:
          timeout: seconds to wait at most (``None``: as long as it takes).

        Raises:
          TaskFailed: when it failed (``error_type`` and ``error_message`` say how) or was
            dead-lettered; ``TaskCancelled`` / ``TaskExpired`` when it was cancelled / expired.
          TimeoutError: when ``timeout`` passes first.
        """
        if self.eager:
            return self._eager_result
        return self.manager.get_result(self.id, timeout=timeout)

    def progress(self) -> Progress | None:
        """The task's last progress report, or ``None`` before the first."""
        if self.eager:
            return None
        return self.manager.task_progress(self.id)

    def cancel(self) -> bool:
        """Cancel the task (see :meth:`TaskManager.cancel`); ``False`` if it had already ended."""
        if self.eager:
            return False
        return self.manager.cancel(self.id)

    def subscribe_progress(self, timeout: float | None = None) -> ProgressSubscription:
        """Progress reports as they are made (see :meth:`TaskManager.subscribe_progress`)."""
        return self.manager.subscribe_progress(self.id, timeout=timeout)

    # Async twins

    async def status_async(self) -> TaskStatus:
        """:meth:`status`, without blocking the event loop."""
        if self.eager:
            return TaskStatus.SUCCESS
        return await self.manager.task_status_async(self.id)

    async def result_async(self, timeout: float | None = None) -> Any:
        """:meth:`get_result`, awaiting the task's end on the running event loop."""
        if self.eager:
            return self._eager_result
        return await self.manager.get_result_async(self.id, timeout=timeout)

    async def progress_async(self) -> Progress | None:
        """:meth:`progress`, without blocking the event loop."""
        if self.eager:
            return None
        return await self.manager.task_progress_async(self.id)

    async def cancel_async(self) -> bool:
        """:meth:`cancel`, without blocking the event loop."""
        if self.eager:
            return False
        return await self.manager.cancel_async(self.id)
