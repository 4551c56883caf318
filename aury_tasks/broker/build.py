"""Open the Dramatiq broker of a URL, and send through any of them.

``redis://``, ``rediss://`` (TLS), ``unix://`` and ``redis+sentinel://`` (``rediss+sentinel://``)
give a Redis broker, ``amqp://`` and ``amqps://`` a RabbitMQ broker (extra ``rabbitmq``,
:mod:`aury_tasks.broker.rabbitmq`), ``memory://`` Dramatiq's stub broker for tests, and no URL
at all the embedded Redis (:mod:`aury_tasks.broker.embedded`). The middleware a broker runs is
given by the caller: the stack is composed above the broker (:mod:`aury_tasks.tasks.stack`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import dramatiq
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..core import keys
from ..core.encoding import install_strict_encoder
from ..core.errors import ConfigError
from ..core.sentinel_url import SENTINEL_SCHEMES
from ..redis.connect import sync_client, use_sentinel_password
from ..redis.scripts import ReplicaWait
from .embedded import EmbeddedServer, ensure_embedded_server
from .redis.broker import MAINTENANCE_INTERVAL, AuryRedisBroker

if TYPE_CHECKING:
    from ..config.snapshot import Settings

#: The URL schemes of a Redis broker.
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)


@dataclass(frozen=True)
class BrokerInfo:
    """What a broker is, for banners and logs: never holds a password."""

    #: ``redis``, ``rabbitmq``, ``memory`` or ``embedded``.
    kind: str
    #: The URL with its password masked.
    display_url: str
    #: The embedded server, when the broker runs on one.
    server: EmbeddedServer | None = None
    #: Where task state is kept (password masked), or ``None`` when it is not kept.
    ledger_display_url: str | None = None

    def describe(self) -> str:
        """One line such as ``embedded valkey 8.1.8 at unix:///app/.aum/redis.sock``."""
        if self.server is not None:
            return f"embedded {self.server.version or 'redis'} at {self.display_url}"
        return f"{self.kind} at {self.display_url}"


def enqueue_many(
    broker: dramatiq.Broker,
    messages: Sequence[tuple[dramatiq.Message[Any], int | None]],
    *,
    owned: bool = False,
) -> list[dramatiq.Message[Any]]:
    """Enqueue ``(message, delay in ms or None)`` pairs: in batches on Redis, one by one elsewhere.

    On :class:`~aury_tasks.broker.redis.broker.AuryRedisBroker` see its ``enqueue_many`` (nothing
    is sent when a message cannot be encoded); other brokers (the stub broker, RabbitMQ) get one
    ``broker.enqueue`` per message, and the messages before one that cannot be encoded are sent.

    ``owned``: as ``AuryRedisBroker.enqueue_many`` takes it.

    Returns:
      The messages as enqueued, in order.
    """
    if isinstance(broker, AuryRedisBroker):
        return broker.enqueue_many(messages, owned=owned)
    return [broker.enqueue(message, delay=delay) for message, delay in messages]


#: A command that fails to reach Redis is tried again this many times, waiting 0.2, 0.4, 0.8 and
#: 1 s (about 2.5 s in all) before the error reaches the caller: a Redis restart or a dropped
#: connection delays a send or a fetch, it does not fail it.
CONNECTION_RETRIES = 4


class _OutageRetry(Retry):
    """redis-py's Retry for outages only: refused credentials are a setting to fix, raised at once."""

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        def retryable(error: Exception) -> bool:
            return not isinstance(error, redis.AuthenticationError) and (
                is_retryable is None or is_retryable(error)
            )

        return super().call_with_retry(do, fail, retryable, with_failure_count)


def redis_client(url: str) -> redis.Redis:
    """A client for the broker's Redis that rides out a restart or a dropped connection.

    Each command is retried on a connection error or a timeout with an exponential backoff
    (:data:`CONNECTION_RETRIES`); then the error is raised (a producer's send raises
    :class:`~aury_tasks.core.errors.BrokerUnavailable`, a worker's consumer restarts and tries again).
    A retried enqueue whose reply was lost may store the message twice: at-least-once. A sentinel
    URL gives a client of the master its sentinels name (:mod:`aury_tasks.redis.connect`).
    """
    retry = _OutageRetry(ExponentialBackoff(cap=1.0, base=0.1), CONNECTION_RETRIES)
    errors = [redis.ConnectionError, redis.TimeoutError]
    return sync_client(url, retry=retry, retry_on_error=errors)


@dataclass(frozen=True)
class OpenedBroker:
    """A broker opened by :func:`open_broker`, with what its banner says of it."""

    broker: dramatiq.Broker
    #: The URL it talks to (the embedded server's when no URL was given).
    url: str
    #: ``redis``, ``rabbitmq`` or ``memory``.
    kind: str
    #: The embedded server, when the broker runs on one.
    server: EmbeddedServer | None


def open_broker(settings: Settings, url: str | None, middleware: list[Middleware]) -> OpenedBroker:
    """The broker for ``url`` (else the embedded Redis), running ``middleware``.

    Raises:
      ConfigError: for an unsupported scheme or a missing optional dependency.
      EmbeddedServerError: when the embedded server cannot start.
    """
    install_strict_encoder()
    use_sentinel_password(settings.sentinel_password_value)
    server = None
    if url is None:
        server = ensure_embedded_server(settings.data_dir)
        url = server.url
    scheme = urlsplit(url).scheme.lower()
    broker: dramatiq.Broker
    if scheme in REDIS_SCHEMES:
        broker = AuryRedisBroker(
            client=redis_client(url),
            middleware=middleware,
            namespace=settings.key_prefix,
            heartbeat_timeout=int(settings.heartbeat_timeout * 1000),
            dead_message_ttl=keys.DEAD_MESSAGE_TTL_MS,
            maintenance_interval=MAINTENANCE_INTERVAL,
            max_deliveries=settings.max_deliveries,
        )
        if settings.broker_min_replicas:
            broker.replica_wait = ReplicaWait(
                settings.broker_min_replicas, settings.broker_replica_timeout_ms
            )
        kind = "redis"
    elif scheme in ("amqp", "amqps"):
        broker = _rabbitmq_broker(settings, url, middleware)
        kind = "rabbitmq"
    elif scheme == "memory":
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
        kind = "memory"
    else:
        raise ConfigError(f"invalid setting TASK_BROKER_URL: unsupported scheme {scheme!r}")
    return OpenedBroker(broker=broker, url=url, kind=kind, server=server)


def _rabbitmq_broker(settings: Settings, url: str, middleware: list[Middleware]) -> dramatiq.Broker:
    """The RabbitMQ broker of ``url`` (:mod:`aury_tasks.broker.rabbitmq`), its queue type from
    ``?queue_type=`` else ``TASK_RABBITMQ_QUEUE_TYPE``.

    Raises:
      ConfigError: pika is not installed; a bad queue type; a maximum priority on quorum queues.
    """
    try:
        from .rabbitmq import AuryRabbitmqBroker, split_queue_type
    except ImportError:
        raise ConfigError(
            "TASK_BROKER_URL is a RabbitMQ URL but pika is not installed: pip install 'aury-tasks[rabbitmq]'"
        ) from None
    plain_url, queue_type = split_queue_type(url, settings.rabbitmq_queue_type)
    return AuryRabbitmqBroker(
        url=plain_url,
        middleware=middleware,
        queue_type=queue_type,
        max_priority=settings.rabbitmq_max_priority,
        max_deliveries=settings.max_deliveries,
    )
