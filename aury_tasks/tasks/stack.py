"""The broker a TaskManager sends through: opened from its URL, with aury-tasks's middleware stack
and the ledger attached.

This is the one place where the stack is composed. The broker underneath knows nothing of
workflows or of the ledger: the ledger reaches it through :attr:`AuryRedisBroker.ledger` and
:attr:`AuryRedisBroker.riders`, set here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq
import redis
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from ..broker.build import BrokerInfo, open_broker
from ..broker.redis.broker import AuryRedisBroker
from ..broker.redis.riders import Riders
from ..core.redaction import redact_url
from ..ledger.store import RedisTaskStore
from ..middleware import CancelAwareRetries, FlowControl, LedgerWriter, LogContext
from ..middleware.soft_timeout import SoftTimeLimit
from ..workflows.middleware import WorkflowSteps

if TYPE_CHECKING:
    from ..config.snapshot import Settings
    from .manager import TaskManager


def default_middleware(settings: Settings, manager: TaskManager | None = None) -> list[Middleware]:
    """Dramatiq's default middleware with our defaults, plus the ledger, asyncio, the log context and
    soft time limits.

    The ledger middleware sits before Retries so that its ``after_process_message`` runs after
    Retries' (Dramatiq runs after-hooks in reverse) and sees whether the message failed for good;
    the workflow middleware sits before the ledger's, so that a step's own record is final before
    what follows it starts. The soft time limit comes last: it is armed just before the task runs
    and disarmed first after it.
    """
    return [
        AgeLimit(),
        TimeLimit(time_limit=settings.timeout * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        WorkflowSteps(manager),
        LedgerWriter(),
        FlowControl(),
        CancelAwareRetries(
            max_retries=settings.max_retries,
            min_backoff=int(settings.retry_delay * 1000),
            max_backoff=int(settings.max_retry_delay * 1000),
        ),
        AsyncIO(),
        LogContext(),
        SoftTimeLimit(),
    ]


def build_broker(
    settings: Settings, url: str | None = None, manager: TaskManager | None = None
) -> tuple[dramatiq.Broker, BrokerInfo]:
    """Build the broker for ``url`` (default: ``settings.broker_url``, else the embedded Redis).

    ``manager``: the task manager the broker is built for (its workflow middleware sends through it).

    Raises:
      ConfigError: for an unsupported scheme or a missing optional dependency.
      EmbeddedServerError: when the embedded server cannot start.
    """
    opened = open_broker(settings, url or settings.broker_url_value, default_middleware(settings, manager))
    broker = opened.broker
    ledger_url = _ledger_url(settings, opened.url, opened.kind)
    if ledger_url is not None:
        _attach_ledger(broker, settings, ledger_url, riding=ledger_url == opened.url)
    info = BrokerInfo(
        kind="embedded" if opened.server else opened.kind,
        display_url=redact_url(opened.url),
        server=opened.server,
        ledger_display_url=redact_url(ledger_url) if ledger_url else None,
    )
    return broker, info


def _ledger_url(settings: Settings, broker_url: str, kind: str) -> str | None:
    """Where task state is kept: the result backend, else the broker's own Redis, else nowhere."""
    if not settings.track_state:
        return None
    if settings.result_backend_url_value:
        return settings.result_backend_url_value
    return broker_url if kind == "redis" else None


def _attach_ledger(broker: dramatiq.Broker, settings: Settings, url: str, *, riding: bool) -> None:
    """Give the ledger middleware its store, and a Redis broker its view of the ledger."""
    client = redis.Redis.from_url(url, decode_responses=True)
    store = RedisTaskStore(client, ttl=settings.result_ttl, url=url)
    redis_broker = broker if isinstance(broker, AuryRedisBroker) else None
    riders = Riders(client, riding=riding and redis_broker is not None)
    if redis_broker is not None:
        redis_broker.ledger = store
        redis_broker.ledger_writes_at_once = not riders.riding
        if riders.riding:
            redis_broker.riders = riders
    writer = ledger_writer(broker)
    writer.store, writer.riders = store, riders


def ledger_writer(broker: dramatiq.Broker) -> LedgerWriter:
    """The ledger middleware of a broker built by :func:`build_broker`."""
    for middleware in broker.middleware:
        if isinstance(middleware, LedgerWriter):
            return middleware
    raise LookupError("the broker has no ledger middleware")
