"""One hook for the end of a delivery, however it ended.

Dramatiq ends each delivery a worker takes with one of two hooks: ``after_process_message``
(the task ran: its result or its error) or ``after_skip_message`` (a ``before_process_message``
hook skipped it). Most of our middleware undo there what they did before the task, either way;
:class:`DeliveryMiddleware` calls its :meth:`~DeliveryMiddleware.after_delivery` from both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ended: the task's result or its error, or skipped before it ran."""

    result: Any = None
    exception: BaseException | None = None
    #: A ``before_process_message`` hook skipped the message: the task did not run.
    skipped: bool = False


#: The outcome of a skipped delivery.
SKIPPED = Outcome(skipped=True)
#: The outcome of a task that returned ``None`` (most do: one object for them all).
_RETURNED_NONE = Outcome()


class DeliveryMiddleware(Middleware):
    """A Dramatiq middleware whose ``after_process_message`` and ``after_skip_message`` are one
    hook, :meth:`after_delivery`."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        ended = _RETURNED_NONE if result is None and exception is None else Outcome(result, exception)
        self.after_delivery(broker, message, ended)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_delivery(broker, message, SKIPPED)

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        """Called once when the delivery of ``message`` has ended, with how it ended."""
