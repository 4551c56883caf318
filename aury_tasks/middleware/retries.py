"""Dramatiq's Retries, except that a cancelled task is neither retried nor dead-lettered, and a
retry is never dropped because the broker could not be reached."""

from __future__ import annotations

import time
from typing import Any, cast

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Retries
from loguru import logger

from ..core.errors import ReplicationTimeout, TaskInterrupted
from ..core.redaction import redact_text
from .delivery import DeliveryMiddleware, Outcome

#: Seconds between attempts to enqueue a retry while the broker cannot be reached.
RETRY_ENQUEUE_PAUSE = 1.0


class CancelAwareRetries(DeliveryMiddleware, Retries):
    """Retries failed tasks with backoff (Dramatiq's middleware); a cancelled one is acked as is."""

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        if outcome.skipped or isinstance(outcome.exception, TaskInterrupted):
            return
        patient = cast(dramatiq.Broker, _PatientBroker(broker))
        Retries.after_process_message(
            self, patient, message, result=outcome.result, exception=outcome.exception
        )


class _PatientBroker:
    """``broker``, whose ``enqueue`` waits for the broker to come back instead of failing.

    Dramatiq logs an error raised by a middleware and carries on, so a retry that could not be
    enqueued (Redis restarting) was lost: its message was acknowledged all the same. Waiting, as
    Dramatiq's own acknowledgement does, keeps the message until its retry is stored (and, with
    ``TASK_BROKER_MIN_REPLICAS``, copied to the replicas: a retry they did not have in time is
    sent again, so it may be stored twice).
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        while True:
            try:
                return self._broker.enqueue(message, delay=delay)
            except (
                redis.ConnectionError,
                redis.TimeoutError,
                BrokerConnectionError,
                ReplicationTimeout,
            ) as exc:
                logger.warning("could not enqueue the retry of task {}, trying again in {:g} s: {}",
                               message.message_id, RETRY_ENQUEUE_PAUSE, redact_text(str(exc)))  # fmt: skip
                time.sleep(RETRY_ENQUEUE_PAUSE)
