"""The RabbitMQ broker: Dramatiq's, with quorum queues, priorities, and clear refusals.

Built by :func:`aury_tasks.broker.build.open_broker` for an ``amqp://`` or ``amqps://`` URL
(extra ``rabbitmq``: pika). What it adds to Dramatiq's ``RabbitmqBroker``:

- **Quorum queues** (``TASK_RABBITMQ_QUEUE_TYPE=quorum`` or ``?queue_type=quorum`` in the URL):
  every queue it declares (the queue, its delay queue ``.DQ`` and dead-letter queue ``.XQ``) is
  declared with ``x-queue-type: quorum``, replicated across the RabbitMQ cluster.
- **Priorities**: ``TASK_RABBITMQ_MAX_PRIORITY`` is Dramatiq's ``max_priority`` (``x-max-priority``
  on classic queues). Without it, or on quorum queues, a message with a priority is refused with
  :class:`~aury_tasks.core.errors.BrokerFeatureUnsupported` rather than sent without one.
- **A queue RabbitMQ refuses to declare** (it exists with other arguments: another type, another
  ``x-max-priority``) raises :class:`~aury_tasks.core.errors.ConfigError` with the server's words,
  instead of Dramatiq's connection retries.
- :func:`consumer_timeout_warning`: RabbitMQ closes the channel of a consumer that holds a message
  longer than its ``consumer_timeout`` (30 minutes by default), so a task allowed to run longer is
  delivered again while it runs; ``aum worker`` says so at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware

from ..core.errors import BrokerFeatureUnsupported, ConfigError
from .redis.dramatiq_internals import RabbitmqQueueArguments

#: The queue types a RabbitMQ broker declares.
QUEUE_TYPES = ("classic", "quorum")
#: RabbitMQ's default ``consumer_timeout``: 30 minutes, in milliseconds.
DEFAULT_CONSUMER_TIMEOUT_MS = 1_800_000
#: AMQP's reply code for a declare that does not match the queue on the server.
PRECONDITION_FAILED = 406


def split_queue_type(url: str, default: str) -> tuple[str, str]:
    """``url`` without its ``queue_type`` query parameter (pika knows no such parameter), and the
    queue type it names, else ``default``.

    Raises:
      ConfigError: for a queue type other than ``classic`` or ``quorum``.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    named = [value for key, value in query if key == "queue_type"]
    queue_type = named[-1].lower() if named else default
    if queue_type not in QUEUE_TYPES:
        raise ConfigError(
            f"invalid setting TASK_BROKER_URL: queue_type is classic or quorum, got {queue_type!r}"
        )
    rest = urlencode([(key, value) for key, value in query if key != "queue_type"])
    return urlunsplit(parts._replace(query=rest)), queue_type


class AuryRabbitmqBroker(RabbitmqQueueArguments, RabbitmqBroker):  # type: ignore[misc]  # untyped base
    """Dramatiq's RabbitMQ broker with publisher confirms, a queue type, and clear refusals.

    >>> broker = AuryRabbitmqBroker(url="amqp://guest:guest@127.0.0.1:5672", queue_type="quorum")

    Parameters:
      url: the AMQP URL (without ``queue_type``: see :func:`split_queue_type`).
      middleware: the middleware it runs.
      queue_type: ``classic`` or ``quorum``.
      max_priority: ``x-max-priority`` of its classic queues; 0: none.

    Raises:
      ConfigError: for a maximum priority on quorum queues (RabbitMQ refuses ``x-max-priority`` there).
    """

    def __init__(
        self,
        *,
        url: str,
        middleware: list[Middleware] | None = None,
        queue_type: str = "classic",
        max_priority: int = 0,
    ) -> None:
        if queue_type == "quorum" and max_priority:
            raise ConfigError(
                "invalid setting TASK_RABBITMQ_MAX_PRIORITY: quorum queues take no x-max-priority; "
                "unset it, or use classic queues (TASK_RABBITMQ_QUEUE_TYPE=classic)"
            )
        super().__init__(
            url=url, middleware=middleware, confirm_delivery=True, max_priority=max_priority or None
        )
        #: ``classic`` or ``quorum``: the type of every queue it declares.
        self.queue_type = queue_type

    def queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Dramatiq's arguments (dead-lettering to ``.XQ``, ``x-max-priority``), and the queue type."""
        return self._typed(arguments)

    def dead_letter_queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Dramatiq's (``x-message-ttl``), and the queue type."""
        return self._typed(arguments)

    def _typed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {**arguments, "x-queue-type": "quorum"} if self.queue_type == "quorum" else arguments

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        """Declare ``queue_name`` as Dramatiq does; a declare the server refuses is a ConfigError.

        Raises:
          ConfigError: the queue exists with other arguments (its type, its ``x-max-priority``).
          ConnectionClosed: the server could not be reached (Dramatiq's error).
        """
        try:
            super().declare_queue(queue_name, ensure=ensure)
        except ConnectionClosed as exc:
            cause = exc.message
            if isinstance(cause, pika.exceptions.ChannelClosedByBroker) and (
                cause.reply_code == PRECONDITION_FAILED
            ):
                raise ConfigError(
                    f"RabbitMQ refused queue {queue_name!r}: {cause.reply_text}; RabbitMQ cannot change "
                    "an existing queue's type or x-max-priority (TASK_RABBITMQ_QUEUE_TYPE, "
                    "TASK_RABBITMQ_MAX_PRIORITY): keep its settings, or move its messages and delete it"
                ) from None
            raise

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        """Enqueue as Dramatiq does, but refuse a priority the queues cannot honour.

        Raises:
          BrokerFeatureUnsupported: the message has a priority and the queues none (quorum queues,
            or classic ones without ``TASK_RABBITMQ_MAX_PRIORITY``); nothing was sent.
        """
        if message.options.get("broker_priority") and not self.max_priority:
            instead = (
                "quorum queues have no priorities: send it without one"
                if self.queue_type == "quorum"
                else "set TASK_RABBITMQ_MAX_PRIORITY (e.g. 9) for new queues, or send it without one"
            )
            raise BrokerFeatureUnsupported(f"task priority ({message.actor_name})", "RabbitMQ", instead)
        return super().enqueue(message, delay=delay)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LongTask:
    """A task whose time limit is longer than the server's ``consumer_timeout``."""

    name: str
    time_limit_ms: int


def consumer_timeout_warning(time_limits: Mapping[str, int], consumer_timeout_ms: int) -> str | None:
    """One line naming the tasks whose time limit (ms, by task name) is over ``consumer_timeout_ms``.

    ``None`` when there is none, or when the server has no consumer timeout (0).
    """
    if not consumer_timeout_ms:
        return None
    long_tasks = sorted(
        (LongTask(name, limit) for name, limit in time_limits.items() if limit > consumer_timeout_ms),
        key=lambda task: (-task.time_limit_ms, task.name),
    )
    if not long_tasks:
        return None
    named = ", ".join(f"{task.name} ({task.time_limit_ms / 1000:g} s)" for task in long_tasks)
    return (
        f"RabbitMQ closes the channel of a consumer that holds a message longer than its "
        f"consumer_timeout ({consumer_timeout_ms / 1000:g} s, TASK_RABBITMQ_CONSUMER_TIMEOUT_MS), and "
        f"delivers the message again: these tasks may run longer: {named}. Raise consumer_timeout in "
        "rabbitmq.conf (and TASK_RABBITMQ_CONSUMER_TIMEOUT_MS with it), or lower their timeout"
    )
