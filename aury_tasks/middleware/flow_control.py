"""Worker side of ``rate_limit`` and ``concurrency``: a run over its limit is deferred, not failed.

Just before a run of such a task starts (``before_process_message``, after the ledger's own
checks), it takes a concurrency slot, then counts against the rate limit. When either is full,
the same message (same task id, same retry count) is sent again with a short delay and this
delivery is skipped: Dramatiq acknowledges it without a final write, and the ledger makes no
write for the copy (the same task and attempt as the run under way), so the record stays
``pending`` and the attempt is not a retry. The copy is enqueued before the delivery is acknowledged: a worker
killed in between leaves both, and the task may run twice (at-least-once), never zero times.

The delay grows with the deferrals of a message (counted in its ``deferrals`` option), so a long
backlog does not spin: each waiting message tries about as often as its wait so far suggests.

A run holding a slot gives it back when it ends, however it ends (a result, an error, a time
limit, a cancel); a thread renews the leases of this process's runs every
:data:`RENEW_INTERVAL` seconds, so the slot of a killed worker frees within
:data:`LEASE_SECONDS`.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from typing import NoReturn

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.errors import ActorNotFound, BrokerConnectionError
from dramatiq.middleware import SkipMessage
from loguru import logger

from ..broker.redis.dramatiq_internals import WORKER_THREAD_LOGGER
from ..core.keys import KeySpace
from ..core.redaction import redact_text
from .context import context_of, existing_context
from .delivery import DeliveryMiddleware, Outcome
from .ledger import LedgerWriter
from .limits import ConcurrencyLeases, RateLimit, WindowLimiter
from .upkeep import _LoopThread

#: How long a concurrency lease lasts unless renewed, in seconds: a killed worker's slot frees
#: within this.
LEASE_SECONDS = 30.0
#: Seconds between renewals of this process's leases.
RENEW_INTERVAL = 5.0
#: Longest a run is deferred at once, in seconds.
MAX_DEFER_SECONDS = 60.0
#: First deferral for a full concurrency limit: 0.5 to 1 s; it grows by half this per deferral.
CONCURRENCY_STEP = 0.5
#: Longest deferral for a full concurrency limit, in seconds.
MAX_CONCURRENCY_DEFER = 5.0
#: Message option counting the deferrals of a message.
DEFERRALS = "deferrals"
#: Seconds between attempts to enqueue a deferred run while the broker cannot be reached.
ENQUEUE_PAUSE = 1.0


#: When the running task was let through its rate limit (see :func:`admitted_at`).
_admitted: contextvars.ContextVar[float | None] = contextvars.ContextVar("aury_admitted_at", default=None)


def admitted_at() -> float | None:
    """When the running task was let through its ``rate_limit``: the moment its window counted it.

    UNIX seconds; its whole second is the bucket the run was counted in (for a window of up to a
    minute). The task's own first line can come later than that moment on a loaded host (a worker
    stalled in between), and even in another second. ``None`` outside a task, in eager mode, and for
    a task without a rate limit.
    """
    return _admitted.get()


class FlowControl(DeliveryMiddleware):
    """Applies the ``rate_limit`` and ``concurrency`` options of a task before it runs.

    The limits are kept in the ledger's Redis, else in the broker's (a Redis broker with
    ``TASK_TRACK_STATE=false``). With neither (the in-memory broker, RabbitMQ without a Redis
    result backend) they cannot be shared, and a worker says so once per task and runs it unlimited.

    Parameters:
      keys: the keys the limits live under (``TASK_KEY_PREFIX``'s).
      ledger: the ledger middleware of the same stack, whose Redis keeps the limits.
      lease_seconds: how long a concurrency lease lasts unless renewed.
      renew_interval: seconds between renewals of this process's leases.
    """

    def __init__(
        self,
        keys: KeySpace,
        *,
        ledger: LedgerWriter | None = None,
        lease_seconds: float = LEASE_SECONDS,
        renew_interval: float = RENEW_INTERVAL,
    ) -> None:
        self.keys = keys
        self.ledger = ledger
        self.lease_seconds = lease_seconds
        self.renew_interval = renew_interval
        #: Leases held by runs in this process: run -> task name.
        self.held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._resolved = False
        self._leases: ConcurrencyLeases | None = None
        self._limiters: dict[str, WindowLimiter] = {}
        self._unlimited_warned: set[str] = set()
        self._renewer: LeaseRenewer | None = None
        self._log_filter = _QuietDeferrals()

    @property
    def actor_options(self) -> set[str]:
        return {"rate_limit", "concurrency"}

    # Worker process life

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        logging.getLogger(WORKER_THREAD_LOGGER).addFilter(self._log_filter)
        if self._redis(broker) is not None and self._leases is not None:
            self._renewer = LeaseRenewer(self, self._leases, self.renew_interval)
            self._renewer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None
        logging.getLogger(WORKER_THREAD_LOGGER).removeFilter(self._log_filter)

    # Processing

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            options = broker.get_actor(message.actor_name).options
        except ActorNotFound:
            return
        rate: RateLimit | None = options.get("rate_limit")
        concurrency: int | None = options.get("concurrency")
        if rate is None and concurrency is None:
            return
        client = self._redis(broker)
        if client is None or self._leases is None:
            self._warn_unlimited(message.actor_name)
            return
        run = f"{message.message_id}:{message.options.get('redis_message_id', '')}"
        try:
            if concurrency is not None:
                if not self._leases.acquire(message.actor_name, run, concurrency):
                    self._defer(broker, message, _concurrency_delay(_deferrals(message)), "concurrency")
                with self._lock:
                    self.held[run] = message.actor_name
                context_of(message).lease = run
            if rate is not None:
                limiter, now = self._limiter(client, message.actor_name, rate), time.time()
                if not limiter.try_acquire(now):
                    self._release(message)
                    delay = _rate_delay(rate, limiter.seconds_to_next_bucket(now), _deferrals(message))
                    self._defer(broker, message, delay, f"rate limit {rate}")
                _admitted.set(now)
        except redis.RedisError as exc:
            # The limit cannot be checked: not running is the safe side.
            logger.warning("cannot check the limits of task {}, deferring it: {}",
                           message.message_id, redact_text(str(exc)))  # fmt: skip
            self._release(message)
            self._defer(broker, message, ENQUEUE_PAUSE + random.random(), "limits unreachable")

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        _admitted.set(None)
        self._release(message)

    # Helpers

    def _redis(self, broker: dramatiq.Broker) -> redis.Redis | None:
        """The Redis holding the limits: the ledger's, else the broker's, else ``None``."""
        if not self._resolved:
            writer = self.ledger
            client = writer.store.client if writer is not None and writer.store is not None else None
            if client is None and isinstance(getattr(broker, "client", None), redis.Redis):
                client = broker.client  # type: ignore[attr-defined]
            self._client = client
            self._leases = (
                ConcurrencyLeases(client, self.keys, lease_seconds=self.lease_seconds) if client else None
            )
            self._resolved = True
        return self._client

    def _limiter(self, client: redis.Redis, task_name: str, rate: RateLimit) -> WindowLimiter:
        limiter = self._limiters.get(task_name)
        if limiter is None:
            limiter = self._limiters[task_name] = WindowLimiter(client, self.keys.rate_limit(task_name), rate)
        return limiter

    def _release(self, message: MessageProxy) -> None:
        """Give back the slot ``message``'s run holds, if any (once)."""
        context = context_of(message)
        run = context.lease
        if run is None or self._leases is None:
            return
        context.lease = None
        with self._lock:
            task_name = self.held.pop(run, message.actor_name)  # no longer renewed: it ends anyway
        try:
            self._leases.release(task_name, run)
        except redis.RedisError as exc:
            logger.warning("could not give back the concurrency slot of task {} (it frees in {:g} s): {}",
                           message.message_id, self.lease_seconds, redact_text(str(exc)))  # fmt: skip

    def _defer(self, broker: dramatiq.Broker, message: MessageProxy, delay: float, why: str) -> NoReturn:
        """Send ``message`` again in ``delay`` seconds, then skip this delivery (acknowledged)."""
        again = message.copy(options={DEFERRALS: _deferrals(message) + 1})
        while True:
            try:
                broker.enqueue(again, delay=max(1, int(delay * 1000)))
                break
            except (redis.ConnectionError, redis.TimeoutError, BrokerConnectionError) as exc:
                # Acknowledging without the copy stored would lose the task: wait for the broker.
                logger.warning("could not defer task {}, trying again in {:g} s: {}",
                               message.message_id, ENQUEUE_PAUSE, redact_text(str(exc)))  # fmt: skip
                time.sleep(ENQUEUE_PAUSE)
        logger.debug("task {} deferred {:.2f} s: {}", message.message_id, delay, why)
        context_of(message).deferred = True
        raise SkipMessage(f"task {message.message_id} deferred: {why}")

    def _warn_unlimited(self, task_name: str) -> None:
        if task_name not in self._unlimited_warned:
            self._unlimited_warned.add(task_name)
            logger.warning("task {} has a rate_limit or concurrency, but there is no Redis to share it in "
                           "(no ledger, broker not Redis): it runs unlimited", task_name)  # fmt: skip


class LeaseRenewer(_LoopThread):
    """Renews the concurrency leases of this process's runs every ``interval`` seconds."""

    def __init__(self, control: FlowControl, leases: ConcurrencyLeases, interval: float) -> None:
        super().__init__("aury-lease-renewer")
        self.control = control
        self.leases = leases
        self.interval = interval

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            with self.control._lock:
                held = [(task_name, run) for run, task_name in self.control.held.items()]
            try:
                lost = self.leases.renew(held)
            except redis.RedisError as exc:
                logger.warning("could not renew concurrency leases: {}", redact_text(str(exc)))
                continue
            for run in lost:
                logger.warning(
                    "the concurrency lease of run {} ended before the run (Redis unreachable for {:g} s?): "
                    "another run may have its slot",
                    run,
                    self.leases.lease_ms / 1000,
                )


class _QuietDeferrals(logging.Filter):
    """Drops Dramatiq's "Message … was skipped." warning for a deferred message: it is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        context = existing_context(args[0]) if isinstance(args, tuple) and args else None
        return not (context is not None and context.deferred)


def _deferrals(message: MessageProxy) -> int:
    return int(message.options.get(DEFERRALS, 0))


def _rate_delay(rate: RateLimit, to_next_bucket: float, deferrals: int) -> float:
    """Seconds to defer a run over its rate limit.

    No sooner than the current bucket closes (before that the window stays full), then spread
    at random over ``window / limit`` (the time between two runs) times the deferrals so far.
    """
    spread = min(MAX_DEFER_SECONDS, rate.window / rate.limit * (1 + deferrals))
    return min(MAX_DEFER_SECONDS, to_next_bucket + random.uniform(0, spread))


def _concurrency_delay(deferrals: int) -> float:
    """Seconds to defer a run whose concurrency limit is full: 0.5 to 1 s at first, then longer."""
    base = min(MAX_CONCURRENCY_DEFER / 2, CONCURRENCY_STEP * (1 + deferrals / 2))
    return base * random.uniform(1, 2)
