"""TaskHandle: what ``task.send()`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


@dataclass(slots=True)
class TaskHandle:
    """A sent task: its message id, name and queue.

    ``id`` is the Dramatiq message id, the same on every retry of the task. In eager mode the
    handle also carries the value the task returned.
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
