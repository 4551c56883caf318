"""The broker a TaskManager sends through: opened from its URL, with aury-tasks's middleware stack
and the ledger attached.

This is the one place where the stack is composed. The broker underneath knows nothing of
workflows or of the ledger: the ledger reaches it through :attr:`AuryRedisBroker.ledger` and
:attr:`AuryRedisBroker.riders`, set here. A middleware that works with another is handed it
here, when both are composed (:class:`MiddlewareStack`); none looks for its peers in
``broker.middleware``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dramatiq
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
from ..ledger.redis_ledger import RedisLedger
from ..middleware import CancelAwareRetries, FlowControl, LedgerWriter, LogContext
from ..middleware.soft_timeout import SoftTimeLimit
from ..redis.connect import sync_client
from ..workflows.middleware import WorkflowSteps

if TYPE_CHECKING:
    from ..config.snapshot import Settings
    from .manager import TaskManager


@dataclass(frozen=True)
class MiddlewareStack:
    """The middleware composed for one broker: all of them in order, and by role the ones that
    other middleware (or the manager) work with."""

    middleware: list[Middleware]
    ledger: LedgerWriter
    flow_control: FlowControl
    workflows: WorkflowSteps


#: The stack of each broker :func:`build_broker` built (what :func:`ledger_writer` reads).
_stacks: weakref.WeakKeyDictionary[dramatiq.Broker, MiddlewareStack] = weakref.WeakKeyDictionary()


def compose_middleware(settings: Settings, manager: TaskManager | None = None) -> MiddlewareStack:
    """Dramatiq's default middleware with our defaults, plus the ledger, asyncio, the log context and
    soft time limits; each middleware is handed the peers it works with.

    The ledger middleware sits before Retries so that its ``after_process_message`` runs after
    Retries' (Dramatiq runs after-hooks in reverse) and sees whether the message failed for good;
    the workflow middleware sits before the ledger's, so that a step's own record is final before
    what follows it starts. The soft time limit comes last: it is armed just before the task runs
    and disarmed first after it.
    """
    ledger = LedgerWriter()
    flow_control = FlowControl(settings.keys, ledger=ledger)
    workflows = WorkflowSteps(manager, ledger=ledger)
    middleware = [
        AgeLimit(),
        TimeLimit(time_limit=settings.timeout * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        workflows,
        ledger,
        flow_control,
        CancelAwareRetries(
            max_retries=settings.max_retries,
            min_backoff=int(settings.retry_delay * 1000),
            max_backoff=int(settings.max_retry_delay * 1000),
        ),
        AsyncIO(),
        LogContext(),
        SoftTimeLimit(),
    ]
    return MiddlewareStack(middleware, ledger, flow_control, workflows)


def default_middleware(settings: Settings, manager: TaskManager | None = None) -> list[Middleware]:
    """The middleware of :func:`compose_middleware`, in order."""
    return compose_middleware(settings, manager).middleware


def build_broker(
    settings: Settings, url: str | None = None, manager: TaskManager | None = None
) -> tuple[dramatiq.Broker, BrokerInfo]:
    """Build the broker for ``url`` (default: ``settings.broker_url``, else the embedded Redis).

    ``manager``: the task manager the broker is built for (its workflow middleware sends through it).

    Raises:
      ConfigError: for an unsupported scheme or a missing optional dependency.
      EmbeddedServerError: when the embedded server cannot start.
    """
    stack = compose_middleware(settings, manager)
    opened = open_broker(settings, url or settings.broker_url_value, stack.middleware)
    broker = opened.broker
    _stacks[broker] = stack
    ledger_url = _ledger_url(settings, opened.url, opened.kind)
    if ledger_url is not None:
        _attach_ledger(broker, stack.ledger, settings, ledger_url, riding=ledger_url == opened.url)
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


def _attach_ledger(
    broker: dramatiq.Broker, writer: LedgerWriter, settings: Settings, url: str, *, riding: bool
) -> None:
    """Give the ledger middleware its store, and a Redis broker its view of the ledger."""
    client = sync_client(url, decode_responses=True)
    store = RedisLedger(client, settings.keys, ttl=settings.result_ttl, url=url)
    redis_broker = broker if isinstance(broker, AuryRedisBroker) else None
    riders = Riders(client, riding=riding and redis_broker is not None)
    if redis_broker is not None:
        redis_broker.ledger = store
        redis_broker.ledger_writes_at_once = not riders.riding
        if riders.riding:
            redis_broker.riders = riders
    writer.store, writer.riders = store, riders


def ledger_writer(broker: dramatiq.Broker) -> LedgerWriter:
    """The ledger middleware of a broker built by :func:`build_broker`.

    Raises:
      LookupError: for a broker :func:`build_broker` did not build.
    """
    stack = _stacks.get(broker)
    if stack is None:
        raise LookupError("the broker has no ledger middleware: build_broker did not build it")
    return stack.ledger
