"""The RabbitMQ broker: Dramatiq's, with quorum queues, priorities, and clear refusals.

Built by :func:`aury_tasks.broker.build.open_broker` for an ``amqp://`` or ``amqps://`` URL
(extra ``rabbitmq``: pika). What it adds to Dramatiq's ``RabbitmqBroker``:

- **Quorum queues** (``TASK_RABBITMQ_QUEUE_TYPE=quorum`` or ``?queue_type=quorum`` in the URL):
  every queue it declares (the queue, its delay queue ``.DQ`` and dead-letter queue ``.XQ``) is
  declared with ``x-queue-type: quorum``, replicated across the RabbitMQ cluster.
- **A delivery limit on quorum queues** (``TASK_MAX_DELIVERIES``, as on Redis): a message whose
  ``TASK_MAX_DELIVERIES`` deliveries all ended unacknowledged (its worker killed, out of memory,
  or stopped while holding it) is dead-lettered to ``.XQ`` by the worker that gets it next, its
  record ``dead`` with the reason ``redelivery_limit`` (:class:`DeliveryLimit`), without running
  it again. RabbitMQ counts the deliveries (``x-delivery-count``); the queue is declared with
  ``x-delivery-limit: TASK_MAX_DELIVERIES`` (RabbitMQ delivers a message at most once more than
  its limit), so that RabbitMQ dead-letters the message itself should that last delivery, the
  worker's check, end unacknowledged too. The delay queue has no limit: a worker holds its delayed
  messages unacknowledged until they are due, and gives them back whenever it stops. Classic
  queues count no deliveries: there, a task that kills its worker comes back until it is removed
  by hand (as in Dramatiq).
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
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware, SkipMessage
from loguru import logger

from ..core.errors import BrokerFeatureUnsupported, ConfigError
from .rabbitmq_internals import RabbitmqQueueArguments, counting_rabbitmq_consumer, delivery_count_of
from .redis.recovery import REDELIVERY_LIMIT

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
      max_deliveries: on quorum queues, the deliveries of a message that may end unacknowledged
        before it is dead-lettered (``TASK_MAX_DELIVERIES``): see :class:`DeliveryLimit`.

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
        max_deliveries: int = 5,
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
        #: Deliveries of a message that may end unacknowledged (quorum queues; classic ones count none).
        self.max_deliveries = max_deliveries
        if queue_type == "quorum":
            limit = DeliveryLimit(max_deliveries)
            first = type(self.middleware[0]) if self.middleware else None
            self.add_middleware(limit, before=first)  # before any other takes a slot or a lock

    @property
    def consumer_class(self) -> type[dramatiq.Consumer]:
        """Dramatiq's consumer; on quorum queues, one whose messages carry their delivery count."""
        if self.queue_type == "quorum":
            return counting_rabbitmq_consumer()
        return super().consumer_class  # type: ignore[no-any-return]

    def queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Dramatiq's arguments (dead-lettering to ``.XQ``, ``x-max-priority``), the queue type, and
        on quorum queues ``x-delivery-limit`` (``max_deliveries``: RabbitMQ dead-letters a message
        returned more often than that, so after ``max_deliveries + 1`` deliveries; the worker
        dead-letters it unrun at that last delivery, :class:`DeliveryLimit`)."""
        if self.queue_type == "quorum":
            return {**self._typed(arguments), "x-delivery-limit": self.max_deliveries}
        return arguments

    def delay_queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Dramatiq's (those of the queue), and the queue type: no delivery limit (a worker gives
        its delayed messages back, unacknowledged, each time it stops)."""
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
                    "an existing queue's type, x-max-priority or x-delivery-limit (TASK_RABBITMQ_QUEUE_TYPE, "
                    "TASK_RABBITMQ_MAX_PRIORITY, TASK_MAX_DELIVERIES on quorum queues): keep its settings, "
                    "or move its messages and delete it"
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


class DeliveryLimit(Middleware):
    """Dead-letter, unrun, a message whose ``max_deliveries`` deliveries all ended unacknowledged.

    On quorum queues RabbitMQ counts the deliveries of a message that ended without an ack or a
    nack: its worker was killed (out of memory, a crash), lost its connection, or stopped while
    holding it (a prefetched message counts too: RabbitMQ cannot tell it from a running one). The
    delivery that comes after ``max_deliveries`` of those is failed here before any other
    middleware sees it: the worker nacks it to ``.XQ``, and the ledger records it ``dead`` with
    the reason ``redelivery_limit: …``. Messages without a count (classic queues) pass.
    """

    def __init__(self, max_deliveries: int) -> None:
        self.max_deliveries = max_deliveries

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        deliveries = delivery_count_of(message)
        if deliveries < self.max_deliveries:
            return
        logger.error("task {} ({}) dead-lettered: {} of its deliveries ended unacknowledged",
                     message.message_id, message.actor_name, deliveries)  # fmt: skip
        message.fail()
        raise SkipMessage(
            f"{REDELIVERY_LIMIT}: {deliveries} deliveries ended unacknowledged (their worker killed, "
            "or stopped holding it)"
        )


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
