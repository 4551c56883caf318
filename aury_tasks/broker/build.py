"""Build the Dramatiq broker from a URL.

``redis://``, ``rediss://`` (TLS) and ``unix://`` give a Redis broker, ``amqp://`` and ``amqps://``
a RabbitMQ broker (extra ``rabbitmq``), ``memory://`` Dramatiq's stub broker for tests, and no URL
at all the embedded Redis (:mod:`aury_tasks.broker.embedded`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import dramatiq
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.errors import DecodeError
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)
from loguru import logger
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..core import keys
from ..core.encoding import encode_message, install_strict_encoder
from ..core.errors import ConfigError
from ..core.ids import new_ids
from ..core.redaction import redact_url
from ..core.status import TaskStatus
from ..ledger.store import RedisTaskStore
from ..middleware import CancelAwareRetries, FlowControl, LedgerWriter, LogContext
from ..middleware.soft_timeout import SoftTimeLimit
from ..redis.scripts import SEND_RECORD, TRANSITION, Write, run_chunks
from ..workflows.middleware import WorkflowSteps
from .embedded import EmbeddedServer, ensure_embedded_server
from .redis.base import (
    ENQUEUE,
    SEND_MANY,
    TRACKED_ENQUEUE,
    TRACKED_SEND,
    FastRedisBroker,
    load_scripts,
    prepare_for_enqueue,
    send_record_args,
)
from .redis.consumer import PoisonSafeRedisConsumer
from .redis.priority import ENQUEUE_WITH_PRIORITY, message_priority
from .redis.recovery import REDELIVERY_LIMIT, MarkSuspectsRunning, recover_dead_workers_messages
from .redis.riders import Riders

if TYPE_CHECKING:
    from ..config.snapshot import Settings


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


class AuryRedisBroker(FastRedisBroker):
    """Dramatiq's Redis broker with time-based queue maintenance, ledger writes riding along, wake-ups.

    Dramatiq runs maintenance (giving a dead worker's unacknowledged messages back to the
    queue) on a 0.1 % chance per broker call, so with little traffic a killed worker's tasks
    can wait for hours (Dramatiq issue #527). Here a worker process's wake-up thread, which
    beats every third of the heartbeat timeout, notices a worker newly dead and makes
    maintenance due on every queue, waking the consumers: their next fetch gives the dead
    worker's messages back (maintenance only recovers the messages of the queue of the call that
    runs it). Recovery is so bounded at about 4/3 of the heartbeat timeout. Every process also runs
    it at least once per ``maintenance_interval`` for each queue it fetches from or sends to (a
    safety net, and Dramatiq's expiry of old dead letters).

    Ledger writes parked in :attr:`riders` for an enqueue, ack or nack are sent in the same
    pipeline as the broker's own script call (see :mod:`aury_tasks.broker.redis.riders`). A message sent
    with a priority waits in its queue's priority set and is fetched first (see
    :mod:`aury_tasks.broker.redis.priority`); :meth:`enqueue_many` sends many messages in few round trips.
    Fetches, sends and the consumer loop are aury-tasks's own (:mod:`aury_tasks.broker.redis.base`):
    an idle worker waits for a wake signal instead of polling.
    """

    def __init__(self, *, maintenance_interval: float, max_deliveries: int = 5, **kwargs: object) -> None:
        # Suspects are marked (and wait for their turn) before anything else runs for them.
        middleware = kwargs.get("middleware")
        if middleware is not None:
            kwargs["middleware"] = [MarkSuspectsRunning(), *middleware]  # type: ignore[misc]
        super().__init__(**kwargs)
        if middleware is None:
            self.add_middleware(MarkSuspectsRunning())
        self.maintenance_interval = maintenance_interval
        #: Deliveries of a message that may end with their worker dead before it is dead-lettered.
        self.max_deliveries = max_deliveries
        self._next_maintenance: dict[str, float] = {}

    def enqueue_many(
        self, messages: Sequence[tuple[dramatiq.Message[Any], int | None]], *, owned: bool = False
    ) -> list[dramatiq.Message[Any]]:
        """Enqueue many messages in few round trips, each as :meth:`enqueue` would, in order.

        Every message is first prepared as :meth:`enqueue` would (``before_enqueue`` announced to
        the middleware, encoded: strict JSON, size cap), so that nothing is sent when one cannot
        be; the ledger's writes wait for their sends meanwhile. Then they are written
        :data:`BULK_BATCH_SIZE` at a time: a run of messages to one queue (a delay queue for
        delayed ones), without priority, whose only ledger write is a new record's, in one
        :data:`SEND_MANY` call; any other in a call of its own with its ledger writes (as
        :meth:`enqueue` sends it). Redis runs a batch while the next is packed and the replies
        of the one before are read.
        ``after_enqueue`` is emitted once :data:`BULK_ROUND_TRIP` messages are written and
        answered. Queue maintenance is left to single sends and fetches.

        Parameters:
          messages: ``(message, delay)`` pairs, the delay in ms or ``None``.
          owned: the messages were made for this call and nothing else holds them (see
            :func:`~aury_tasks.broker.redis.base.prepare_for_enqueue`).

        Returns:
          The messages as enqueued (with their ``redis_message_id``, and ``eta`` when delayed).

        Raises:
          TypeError, ValueError, RecursionError: when a message cannot be encoded (strict JSON):
            nothing was sent.
          redis.ConnectionError, redis.TimeoutError: when Redis cannot be reached; the batches
            sent before the failing one are enqueued.
        """
        if not messages:
            return []
        broker_ids = new_ids(len(messages))
        prepared = [(prepare_for_enqueue(message, delay, owned=owned, broker_id=broker_id), delay)
                    for (message, delay), broker_id in zip(messages, broker_ids, strict=True)]  # fmt: skip
        if self._ledger_writes_at_once():  # before_enqueue would write to the ledger: check all first
            for message, _ in prepared:
                _check_encodable(message)
        encoded: list[tuple[bytes, int]] = []
        try:
            for message, delay in prepared:
                self.emit_before("enqueue", message, delay)
                encoded.append((encode_message(message), message_priority(message) if delay is None else 0))
        except BaseException:
            if self.riders is not None:
                self.riders.drop()  # the writes parked for the messages that will not be sent
            raise
        load_scripts(self.client, BULK_SCRIPTS)

        riders = self.riders

        def calls_of(start: int, stop: int) -> list[Write]:
            # Runs of messages to one queue, without priority, with a new record's write (or none)
            # go in one SEND_MANY call each; any other message in its own call(s).
            calls: list[Write] = []
            run: list[tuple[str, bytes, list[Any]]] = []
            run_queue = ""
            for index in range(start, stop):
                message, (data, priority) = prepared[index][0], encoded[index]
                queue_name, redis_message_id = message.queue_name, message.options["redis_message_id"]
                parked = riders.take(redis_message_id, keep_others=True) if riders is not None else None
                record_args = None if priority else send_record_args(parked)
                if run and (record_args is None or queue_name != run_queue):
                    calls.append(self.send_many_write(run_queue, run))
                    run = []
                if record_args is None:
                    calls += self.calls_with_riders(queue_name, redis_message_id, data, priority, parked,
                                                    before=[])  # fmt: skip
                else:
                    run.append((redis_message_id, data, record_args))
                    run_queue = queue_name
            if run:
                calls.append(self.send_many_write(run_queue, run))
            return calls

        for start in range(0, len(prepared), BULK_ROUND_TRIP):
            stop = min(start + BULK_ROUND_TRIP, len(prepared))
            run_chunks(self.client, (calls_of(index, min(index + BULK_BATCH_SIZE, stop))
                                     for index in range(start, stop, BULK_BATCH_SIZE)))  # fmt: skip
            for message, delay in prepared[start:stop]:
                self.emit_after("enqueue", message, delay)
        return [message for message, _ in prepared]

    def _ledger_writes_at_once(self) -> bool:
        """Whether ``before_enqueue`` sends its ledger write at once (the ledger is on another Redis)."""
        writer = next((m for m in self.middleware if isinstance(m, LedgerWriter)), None)
        return writer is not None and writer.riders is not None and not writer.riders.riding

    def flush(self, queue_name: str) -> None:
        """Drop every message of ``queue_name``: its priority set, its list and its delay queue."""
        self.client.delete(keys.priority_queue(queue_name), keys.priority_sequence(queue_name))
        super().flush(queue_name)

    @property
    def consumer_class(self) -> type:
        """The waking consumer, dead-lettering what it cannot decode.

        See :mod:`aury_tasks.broker.redis.consumer`.
        """
        return PoisonSafeRedisConsumer

    def _maintenance_due_for(self, command: str, queue_name: str) -> bool:
        if command != "fetch" and command != "enqueue":
            return False
        now = time.monotonic()
        if now < self._next_maintenance.get(queue_name, 0.0):
            return False
        self._next_maintenance[queue_name] = now + self.maintenance_interval
        return self._recover(queue_name)

    def maintenance_due(self) -> None:
        self._next_maintenance.clear()

    def _recover(self, queue_name: str) -> bool:
        """Give dead workers' messages of ``queue_name`` back, dead-lettering those past the limit.

        Runs just before Dramatiq's maintenance of that queue, which then has nothing to give back;
        returns ``False`` when this process's own heartbeat was stale (a stall, see
        :func:`~aury_tasks.broker.redis.recovery.recover_dead_workers_messages`): Dramatiq's must not
        run then.
        """
        buried = recover_dead_workers_messages(self, queue_name)
        if buried is None:
            logger.debug("no recovery on queue {} this time: this process could not beat for over {:g} s "
                        "(Redis stalled?)", queue_name, self.heartbeat_timeout / 1000)  # fmt: skip
            return False
        for delivery_id in buried:
            body = self.client.hget(keys.dead_letter_messages(q_name(queue_name)), delivery_id)
            try:
                message = dramatiq.Message.decode(body)
            except DecodeError:
                continue  # cannot say which task: the dead letter is there all the same
            logger.error("task {} ({}) dead-lettered: {} of its deliveries ended with its worker dead",
                         message.message_id, message.actor_name, self.max_deliveries)  # fmt: skip
            writer = next((m for m in self.middleware if isinstance(m, LedgerWriter)), None)
            if writer is not None and writer.store is not None:
                writer.store.transition(
                    message.message_id, TaskStatus.DEAD, attempt=message.options.get("retries", 0) + 1,
                    queue_name=q_name(queue_name), task_name=message.actor_name, finished_at=time.time(),
                    reason=f"{REDELIVERY_LIMIT}: {self.max_deliveries} deliveries all killed their worker",
                    dead_letter_id=delivery_id,
                )  # fmt: skip
        return True


#: Seconds between two maintenance passes of a queue by one process when no worker was seen dying
#: (see :class:`AuryRedisBroker`): an idle worker's fallback fetches should not each run one.
MAINTENANCE_INTERVAL = 300.0

#: The scripts :meth:`AuryRedisBroker.enqueue_many` may call, loaded before it sends.
BULK_SCRIPTS = {ENQUEUE, TRACKED_ENQUEUE, TRACKED_SEND, ENQUEUE_WITH_PRIORITY, TRANSITION, SEND_RECORD,
                SEND_MANY}  # fmt: skip

#: Messages written at a time by :meth:`AuryRedisBroker.enqueue_many` (Redis runs them while the
#: next are written), and at most in one :data:`SEND_MANY` call (which unpacks two values a
#: message in Lua: keep it under 4,000). Small, so that Redis starts early and the caller's wait
#: for the last batch is short: 100 waits 5 to 15 µs a message less than 500 (send_many of 1,000).
BULK_BATCH_SIZE = 100
#: Messages written in one round trip by :meth:`AuryRedisBroker.enqueue_many` (``after_enqueue``
#: is announced for them once it is written).
BULK_ROUND_TRIP = 5_000


def enqueue_many(
    broker: dramatiq.Broker,
    messages: Sequence[tuple[dramatiq.Message[Any], int | None]],
    *,
    owned: bool = False,
) -> list[dramatiq.Message[Any]]:
    """Enqueue ``(message, delay in ms or None)`` pairs: in batches on Redis, one by one elsewhere.

    On :class:`AuryRedisBroker` see :meth:`AuryRedisBroker.enqueue_many` (nothing is sent when a
    message cannot be encoded); other brokers (the stub broker, RabbitMQ) get one
    ``broker.enqueue`` per message, and the messages before one that cannot be encoded are sent.

    ``owned``: as :meth:`AuryRedisBroker.enqueue_many` takes it.

    Returns:
      The messages as enqueued, in order.
    """
    if isinstance(broker, AuryRedisBroker):
        return broker.enqueue_many(messages, owned=owned)
    return [broker.enqueue(message, delay=delay) for message, delay in messages]


def _check_encodable(message: dramatiq.Message[Any]) -> None:
    """Encode ``message`` as it will be sent (the ledger takes its metadata out first), or raise."""
    if "metadata" in message.options:
        options = {key: value for key, value in message.options.items() if key != "metadata"}
        message = dataclasses.replace(message, options=options)
    message.encode()


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
    A retried enqueue whose reply was lost may store the message twice: at-least-once.
    """
    retry = _OutageRetry(ExponentialBackoff(cap=1.0, base=0.1), CONNECTION_RETRIES)
    errors = [redis.ConnectionError, redis.TimeoutError]
    pool = redis.ConnectionPool.from_url(url, retry=retry, retry_on_error=errors)
    return redis.Redis(connection_pool=pool)


def default_middleware(settings: Settings) -> list[Middleware]:
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
        WorkflowSteps(),
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


def build_broker(settings: Settings, url: str | None = None) -> tuple[dramatiq.Broker, BrokerInfo]:
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
            client=redis_client(url),
            middleware=middleware,
            namespace=keys.BROKER_NAMESPACE,
            heartbeat_timeout=heartbeat_ms,
            dead_message_ttl=keys.DEAD_MESSAGE_TTL_MS,
            maintenance_interval=MAINTENANCE_INTERVAL,
            max_deliveries=settings.max_deliveries,
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
    ledger_url = _ledger_url(settings, url, scheme)
    if ledger_url is not None:
        _attach_ledger(
            broker, settings, ledger_url, riding=ledger_url == url and isinstance(broker, AuryRedisBroker)
        )
    info = BrokerInfo(
        kind="embedded" if server else kind,
        display_url=redact_url(url),
        server=server,
        ledger_display_url=redact_url(ledger_url) if ledger_url else None,
    )
    return broker, info


def _ledger_url(settings: Settings, broker_url: str, scheme: str) -> str | None:
    """Where task state is kept: the result backend, else the broker's own Redis, else nowhere."""
    if not settings.track_state:
        return None
    if settings.result_backend_url_value:
        return settings.result_backend_url_value
    return broker_url if scheme in ("redis", "rediss", "unix") else None


def _attach_ledger(broker: dramatiq.Broker, settings: Settings, url: str, *, riding: bool) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    store = RedisTaskStore(client, ttl=settings.result_ttl, url=url)
    riders = Riders(client, riding=riding)
    if riding:
        assert isinstance(broker, AuryRedisBroker)
        broker.riders = riders
    writer = ledger_writer(broker)
    writer.store, writer.riders = store, riders


def ledger_writer(broker: dramatiq.Broker) -> LedgerWriter:
    """The ledger middleware of a broker built by :func:`build_broker`."""
    for middleware in broker.middleware:
        if isinstance(middleware, LedgerWriter):
            return middleware
    raise LookupError("the broker has no ledger middleware")
