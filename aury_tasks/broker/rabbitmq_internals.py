"""Every use of a private part of Dramatiq's RabbitMQ broker, in one module (the Redis broker's,
the worker's and the command line's are in :mod:`aury_tasks.broker.redis.dramatiq_internals`).

- :class:`RabbitmqQueueArguments` makes the arguments of the queues Dramatiq's ``RabbitmqBroker``
  declares overridable (:mod:`aury_tasks.broker.rabbitmq`: quorum queues, their delivery limit).
- :func:`counting_rabbitmq_consumer` is its private ``_RabbitmqConsumer`` whose messages carry the
  delivery count RabbitMQ gave them (:func:`delivery_count_of`).

pika is imported only where a RabbitMQ broker is built: this module imports Dramatiq's RabbitMQ
broker inside the functions that need it. ``tests/unit/test_dramatiq_internals.py`` pins the
parts relied on by a digest of their source.
"""

from __future__ import annotations

import functools
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import dq_name, xq_name


class RabbitmqQueueArguments:
    """A mixin for Dramatiq's ``RabbitmqBroker``: the arguments of the queues it declares, public.

    Dramatiq's private ``_build_queue_arguments`` (a queue's and its delay queue's) and
    ``_declare_xq_queue`` (``x-message-ttl`` only) go through the three methods below.
    """

    channel: Any

    def queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments of ``queue_name``, from Dramatiq's ``arguments``."""
        return arguments

    def delay_queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments of the delay queue (``.DQ``) of ``queue_name``, from Dramatiq's ``arguments``."""
        return arguments

    def dead_letter_queue_arguments(self, queue_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments of the dead-letter queue of ``queue_name``, from Dramatiq's ``arguments``."""
        return arguments

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments = super()._build_queue_arguments(queue_name)  # type: ignore[misc]
        return self.queue_arguments(queue_name, dict(arguments))

    def _declare_dq_queue(self, queue_name: str) -> Any:
        dramatiqs = super()._build_queue_arguments(queue_name)  # type: ignore[misc]
        arguments = self.delay_queue_arguments(queue_name, dict(dramatiqs))
        return self.channel.queue_declare(queue=dq_name(queue_name), durable=True, arguments=arguments)

    def _declare_xq_queue(self, queue_name: str) -> Any:
        from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL

        arguments = self.dead_letter_queue_arguments(queue_name, {"x-message-ttl": DEAD_MESSAGE_TTL})
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True, arguments=arguments)


_DELIVERY_COUNT = "aury_delivery_count"  # the attribute of a delivery's proxy holding its count


def delivery_count_of(message: MessageProxy) -> int:
    """RabbitMQ's ``x-delivery-count`` of ``message`` (quorum queues: its deliveries before, unacked)."""
    return int(vars(message).get(_DELIVERY_COUNT, 0))


@functools.cache
def counting_rabbitmq_consumer() -> type[dramatiq.Consumer]:
    """Dramatiq's RabbitMQ consumer whose pika iterator is wrapped to note the ``x-delivery-count``
    header Dramatiq drops; put on the proxy ``__next__`` returns (pika is imported on first call)."""
    from dramatiq.brokers.rabbitmq import _RabbitmqConsumer

    class CountingRabbitmqConsumer(_RabbitmqConsumer):  # type: ignore[misc]  # untyped base
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.last_delivery_count = 0
            self.iterator = map(self._note_count, self.iterator)  # (method, properties, body)

        def _note_count(self, delivery: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            headers = getattr(delivery[1], "headers", None) or {}  # properties: None when idle
            self.last_delivery_count = int(headers.get("x-delivery-count", 0))
            return delivery

        def __next__(self) -> MessageProxy | None:
            message = super().__next__()
            if message is not None:
                vars(message)[_DELIVERY_COUNT] = self.last_delivery_count
            return message  # type: ignore[no-any-return]

    return CountingRabbitmqConsumer
