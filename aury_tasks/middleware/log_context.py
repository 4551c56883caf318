"""Bind the running task's id, actor and attempt to every log line it produces."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import dramatiq
from dramatiq.broker import MessageProxy
from loguru import logger

from .delivery import DeliveryMiddleware, Outcome


class LogContext(DeliveryMiddleware):
    """Puts ``task_id``, ``actor`` and ``attempt`` into loguru's context while a task runs.

    The context is a contextvar, so it also reaches async tasks: Dramatiq hands coroutines to
    its event loop thread with ``run_coroutine_threadsafe``, which copies the caller's context.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        context: AbstractContextManager[None] = logger.contextualize(
            task_id=message.message_id,
            actor=message.actor_name,
            attempt=message.options.get("retries", 0) + 1,
        )
        context.__enter__()
        self._local.context = context

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        context = getattr(self._local, "context", None)
        if context is not None:
            self._local.context = None
            context.__exit__(None, None, None)
