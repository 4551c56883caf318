"""Build the Dramatiq broker from a URL.

``redis://``, ``rediss://`` (TLS) and ``unix://`` give a Redis broker, ``amqp://`` and ``amqps://``
a RabbitMQ broker (extra ``rabbitmq``), ``memory://`` Dramatiq's stub broker for tests, and no URL
at all the embedded Redis (:mod:`aury_tasks.embedded`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from . import keys
from .embedded import EmbeddedServer, ensure_embedded_server
from .encoding import install_strict_encoder
from .errors import ConfigError
from .middleware.log_context import LogContext
from .settings import TaskSettings, redact_url


@dataclass(frozen=True)
class BrokerInfo:
    """What a broker is, for banners and logs: never holds a password."""

    #: ``redis``, ``rabbitmq``, ``memory`` or ``embedded``.
    kind: str
    #: The URL with its password masked.
    display_url: str
    #: The embedded server, when the broker runs on one.
    server: EmbeddedServer | None = None

    def describe(self) -> str:
        """One line such as ``embedded valkey 8.1.8 at unix:///app/.aum/redis.sock``."""
        if self.server is not None:
            return f"embedded {self.server.version or 'redis'} at {self.display_url}"
        return f"{self.kind} at {self.display_url}"


class AuryRedisBroker(RedisBroker):
    """Dramatiq's Redis broker with time-based queue maintenance.

    Dramatiq runs maintenance (giving a dead worker's unacknowledged messages back to the
    queue) on a 0.1 % chance per broker call, so with little traffic a killed worker's tasks
    can wait for hours (Dramatiq issue #527). Here every process also runs it at least once per
    ``maintenance_interval`` *for each queue* it fetches from or sends to (maintenance only
    recovers the messages of the queue of the call that runs it), which bounds recovery at
    about heartbeat timeout + interval + 1 s.
    """

    def __init__(self, *, maintenance_interval: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.maintenance_interval = maintenance_interval
        self._next_maintenance: dict[str, float] = {}
        # The queue of the call in progress on this thread, for _should_do_maintenance.
        self._call = threading.local()

    def _dispatch(self, command: str) -> Callable[..., Any]:
        dispatch = super()._dispatch(command)

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            self._call.queue_name = queue_name
            return dispatch(queue_name, *args)

        return do_dispatch

    def _should_do_maintenance(self, command: str) -> int:
        if command == "fetch" or command == "enqueue":
            queue_name = getattr(self._call, "queue_name", "")
            now = time.monotonic()
            if now >= self._next_maintenance.get(queue_name, 0.0):
                self._next_maintenance[queue_name] = now + self.maintenance_interval
                return 1
        return super()._should_do_maintenance(command)


def default_middleware(settings: TaskSettings) -> list[Middleware]:
    """Dramatiq's default middleware with our defaults, plus asyncio and the log context."""
    return [
        AgeLimit(),
        TimeLimit(time_limit=settings.timeout * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=settings.max_retries,
            min_backoff=int(settings.retry_delay * 1000),
            max_backoff=int(settings.max_retry_delay * 1000),
        ),
        AsyncIO(),
        LogContext(),
    ]


def build_broker(settings: TaskSettings, url: str | None = None) -> tuple[dramatiq.Broker, BrokerInfo]:
    """Build the broker for ``url`` (default: ``settings.broker_url``, else the embedded Redis).

    Raises:
      ConfigError: for an unsupported scheme or a missing optional dependency.
      EmbeddedServerError: when the embedded server cannot start.
    """
    url = url or settings.broker_url_value
    install_strict_encoder()
    middleware = default_middleware(settings)
    server = None
    if url is None:
        server = ensure_embedded_server(settings.data_dir)
        url = server.url
    scheme = urlsplit(url).scheme.lower()
    broker: dramatiq.Broker
    if scheme in ("redis", "rediss", "unix"):
        heartbeat_ms = int(settings.heartbeat_timeout * 1000)
        broker = AuryRedisBroker(
            url=url,
            middleware=middleware,
            namespace=keys.BROKER_NAMESPACE,
            heartbeat_timeout=heartbeat_ms,
            dead_message_ttl=keys.DEAD_MESSAGE_TTL_MS,
            maintenance_interval=max(1.0, settings.heartbeat_timeout / 3),
        )
        kind = "redis"
    elif scheme in ("amqp", "amqps"):
        try:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker
        except ImportError:
            raise ConfigError(
                "TASK_BROKER_URL is a RabbitMQ URL but pika is not installed: "
                "pip install 'aury-tasks[rabbitmq]'"
            ) from None
        broker = RabbitmqBroker(url=url, middleware=middleware, confirm_delivery=True)
        kind = "rabbitmq"
    elif scheme == "memory":
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
        kind = "memory"
    else:
        raise ConfigError(f"invalid setting TASK_BROKER_URL: unsupported scheme {scheme!r}")
    info = BrokerInfo(kind="embedded" if server else kind, display_url=redact_url(url), server=server)
    return broker, info
