"""Dramatiq's Retries, except that a cancelled task is neither retried nor dead-lettered."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries

from ..errors import TaskInterrupted


class CancelAwareRetries(Retries):
    """Retries failed tasks with backoff (Dramatiq's middleware); a cancelled one is acked as is."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if isinstance(exception, TaskInterrupted):
            return
        super().after_process_message(broker, message, result=result, exception=exception)
