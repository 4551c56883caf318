"""Every use of a private part of Dramatiq (but its RabbitMQ broker's), in one module: a Dramatiq
upgrade is this file's work.

aury-tasks is built on Dramatiq (pinned to its minor version in ``pyproject.toml``) and reaches
below its public API in the places gathered here, each behind a name of ours:

- **The Redis broker**: its dispatch script (:data:`DISPATCH`, called through
  :meth:`RoutedRedisBroker.dispatch_call`, which knows the script's arguments), its private
  ``_dispatch(command)`` behind every ``do_<command>`` (routed to the public methods of
  :class:`RoutedRedisBroker`) and its ``_max_unpack_size()``.
- **The Redis consumer**: :class:`WakingRedisConsumer` replaces the loop, the ack, the nack, the
  requeue and the close of Dramatiq's private ``_RedisConsumer``, on its ``message_cache``,
  ``queued_message_ids`` and prefetch window.
- **The worker**: :class:`LaneableWorker` turns the private ``_add_consumer`` and ``_add_worker``
  into methods a subclass overrides; :func:`consumers_of` and :func:`worker_threads_of` read a
  worker's threads; :func:`on_consumer_thread` tells a consumer thread (which re-enqueues due
  delayed messages) from the others; :data:`WORKER_THREAD_LOGGER` is where a skipped message
  is logged.
- **The command line** (``dramatiq.cli``, the supervisor of ``aum worker``): its processes started
  through a ``multiprocessing`` of ours (:func:`start_cli_processes_with`) and its signals'
  unblocking replaced (:func:`replace_cli_signal_unblocking`), module globals Dramatiq's ``main`` and
  ``worker_process`` look up when they run.
- **A message**: :func:`stuffed_exception`, the error Dramatiq stuffed into a message proxy.
- **The window rate limiter**: :class:`WindowRateLimiterBase`, whose private ``_acquire`` is
  :meth:`~WindowRateLimiterBase.try_acquire`.
- **The RabbitMQ broker**: in :mod:`aury_tasks.broker.rabbitmq_internals`, the other module of
  its kind (apart, as pika is imported only where a RabbitMQ broker is built).

``tests/unit/test_dramatiq_internals.py`` pins each Dramatiq part relied on by a digest of its
source, naming what here depends on it, and fails when a private name of Dramatiq is used in
any other module of ``aury_tasks``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from queue import PriorityQueue
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer, _scripts
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.worker import ConsumerThread, Worker, WorkerThread

from ...redis.clock import ServerClock
from ...redis.outage import redis_back, redis_lost
from ...redis.scripts import LuaScript, Write
from .wakeup import IDLE_FETCH_INTERVAL

if TYPE_CHECKING:
    from .base import FastRedisBroker

#: Dramatiq's own dispatch script (its ``maintain``, ``ack``, ``nack``, ``requeue`` and the rest).
DISPATCH = LuaScript(_scripts["dispatch"].decode())

#: Seconds a consumer waits before it fetches again after a fetch that could not reach Redis.
FETCH_RETRY_PAUSE = 0.5

#: The logger of Dramatiq's worker threads (where "Message … was skipped." goes, the message its
#: one argument).
WORKER_THREAD_LOGGER = "dramatiq.worker.WorkerThread"


# The Redis broker


class RoutedRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose ``do_<command>`` calls reach the methods below.

    Dramatiq's private ``_dispatch(command)`` makes the function behind every ``do_<command>``;
    here a fetch, a send, an ack, a nack and a requeue each go to a method a subclass overrides
    (Dramatiq's own unless overridden), and any other command to Dramatiq's dispatch script
    through :meth:`dispatch_call` (no maintenance).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The Redis server's clock: every time written for other processes to compare (heartbeats,
        #: etas, the "now" of recovery) is read on it, not on this host's (see :mod:`aury_tasks.redis.clock`).
        self.clock = ServerClock(self.client)

    def _dispatch(self, command: str) -> Callable[..., Any]:
        if command == "fetch":
            return self.fetch_batch
        if command == "enqueue":
            return self.send_encoded
        if command == "requeue":
            return self.requeue_now
        if command == "ack":
            return self.ack_now
        if command == "nack":
            return self.nack_now

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            return self.dispatch_call(command, queue_name, *args).run(self.client)

        return do_dispatch

    def fetch_batch(self, queue_name: str, count: int) -> list[bytes | None]:
        """Fetch up to ``count`` messages of ``queue_name`` (``do_fetch``): their bodies (Dramatiq's)."""
        return list(super()._dispatch("fetch")(queue_name, count))

    def send_encoded(self, queue_name: str, redis_message_id: str, data: bytes, priority: int = 0) -> None:
        """Send one encoded message (``do_enqueue``; Dramatiq's ignores ``priority``)."""
        super()._dispatch("enqueue")(queue_name, redis_message_id, data)

    def ack_now(self, queue_name: str, redis_message_id: str) -> None:
        """Acknowledge a message (``do_ack``; Dramatiq's)."""
        super()._dispatch("ack")(queue_name, redis_message_id)

    def nack_now(self, queue_name: str, redis_message_id: str) -> None:
        """Move a message to the dead letters (``do_nack``, as Dramatiq's consumer calls it; Dramatiq's)."""
        super()._dispatch("nack")(queue_name, redis_message_id)

    def requeue_now(self, queue_name: str, *redis_message_ids: str) -> None:
        """Put fetched messages back at the head of their queue (``do_requeue``; Dramatiq's)."""
        super()._dispatch("requeue")(queue_name, *redis_message_ids)

    def dispatch_call(self, command: str, queue_name: str, *args: Any, maintenance: bool = False) -> Write:
        """A call of Dramatiq's dispatch script: ``command`` on ``queue_name`` with ``args``.

        ``maintenance``: run Dramatiq's queue maintenance first (with the command ``maintain``,
        which the script does not know, that is all it runs besides the heartbeat).
        """
        arguments = [command, self.clock.millis(), queue_name, self.broker_id, self.heartbeat_timeout,
                     self.dead_message_ttl, int(maintenance), self.max_unpack_size(), *args]  # fmt: skip
        return Write(DISPATCH, [self.namespace], arguments)

    def max_unpack_size(self) -> int:
        """The most values this Redis's Lua ``unpack`` takes at once (Dramatiq measures it once)."""
        return int(self._max_unpack_size())


# The Redis consumer


class WakingRedisConsumer(_RedisConsumer):  # type: ignore[misc]  # Dramatiq's consumer is untyped
    """Dramatiq's Redis consumer without its timers (see the module's text).

    The consumer fetches again at once while its queue has messages. After a fetch that drained
    its queue (fewer messages than asked, or none) it waits for a wake signal
    (:mod:`aury_tasks.broker.redis.wakeup`) and then fetches whatever its window has room for, so a
    message sent while the worker's threads are busy is fetched at once and takes its place in
    the worker's order by actor priority; it fetches anyway every
    :data:`~aury_tasks.broker.redis.wakeup.IDLE_FETCH_INTERVAL` seconds. While its queue has more
    than its window holds, it waits for acks to free half of the window, so fetches come in
    batches. Every wait is cut at the worker timeout (Dramatiq's worker then looks at its stop
    and pause flags) and at the time of the earliest delayed message it holds (the worker sends
    it to its queue then).
    """

    def __init__(self, broker: FastRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._waker = broker.waker
        self._wake = self._waker.register(queue_name)
        self._idle = False
        self._fetch_due = 0.0
        #: How many slots of the window must be free before a busy consumer fetches again: half
        #: of it, so that a fetch brings a batch while the threads still have work.
        self._refill = max(1, prefetch // 2)
        # message id -> eta (ms) of the delayed messages handed to the worker and not yet settled.
        self._etas: dict[str, int] = {}

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:  # its body was gone (acked elsewhere): Dramatiq skips it too
                        continue
                    message = dramatiq.Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    eta = message.options.get("eta")
                    if isinstance(eta, int | float):
                        # The eta is on the server's clock; Dramatiq's worker compares it with this
                        # host's: it gets the moment of this host's clock instead.
                        message.options["eta"] = self._etas[message.message_id] = (
                            self.broker.clock.local_millis(eta)
                        )
                    return MessageProxy(message)
                now = time.monotonic()
                self._waker.check_in(self.queue_name, self._wake)
                free = self.prefetch - self.outstanding_message_count
                woken = self._wake.is_set()
                if free > 0 and (now >= self._fetch_due or (woken if self._idle else free >= self._refill)):
                    self._wake.clear()
                    self.message_cache = self.broker.do_fetch(self.queue_name, free)
                    redis_back(f"consumer of {self.queue_name}")
                    # Fewer than asked: the queue is drained and the fetch left its idle marker.
                    self._idle = len(self.message_cache) < free
                    ready = self._waker.ready.is_set()
                    self._fetch_due = now + (IDLE_FETCH_INTERVAL if ready else self.timeout / 1000)
                    if self.message_cache:
                        continue
                elif woken:
                    self._wake.clear()
                    continue
                self._wake.wait(self._wait_seconds())
                return None
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.connection_lost(error)
            return None

    def connection_lost(self, error: Exception) -> None:
        """A fetch could not reach Redis: report it, wait :data:`FETCH_RETRY_PAUSE`, fetch again.

        Dramatiq's consumer raises ``ConnectionClosed`` here: its consumer thread then logs a
        critical line, drops its delayed messages and starts a new consumer 3 s later, at every
        failed try, for every queue. Here the consumer stays, its part reported to
        :mod:`aury_tasks.redis.outage` (one warning per process for the whole outage), and tries
        again soon: the outage costs what it lasts (a Sentinel failover: a few seconds), not a
        line and 3 s per queue per try. Its next fetch reports Redis back.
        """
        redis_lost(f"consumer of {self.queue_name}", error)
        self._fetch_due = 0.0
        time.sleep(FETCH_RETRY_PAUSE)

    def _wait_seconds(self) -> float:
        """How long to wait for a signal: the worker timeout, cut at the earliest eta held."""
        seconds = self.timeout / 1000
        if self._etas:
            seconds = min(seconds, (min(self._etas.values()) - current_millis()) / 1000)
        return max(0.0, seconds)

    def _settled(self, message_ids: list[str]) -> None:
        for message_id in message_ids:
            self._etas.pop(message_id, None)
        if not self._idle:  # a slot freed matters only to a consumer whose queue had more
            self._wake.set()

    def ack(self, message: Any) -> None:
        """Hand the acknowledgement to the process's ack sender and free the slot.

        The message stays fetched by this worker in Redis until the sender has sent it (then
        :meth:`_ack_sent` is called, from the sender's thread).
        """
        try:
            calls = self.broker.ack_calls(self.queue_name, message.options["redis_message_id"])
            self.broker.acks.submit(calls, lambda: self._ack_sent(message))
        finally:
            self.queued_message_ids.discard(message.message_id)
            self._settled([message.message_id])

    def _ack_sent(self, message: Any) -> None:
        """Called (from the acknowledgement thread) once ``message``'s acknowledgement was sent."""

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)
        finally:
            self._settled([message.message_id])

    def requeue(self, messages: Any) -> None:
        messages = list(messages)
        try:
            super().requeue(messages)
        finally:
            self._settled([message.message_id for message in messages])

    def close(self) -> None:
        """Give back the messages fetched but not handed to the worker yet, then stop being woken.

        (Dramatiq's consumer leaves them to wait for the heartbeat timeout: a worker stopping
        between two messages of a fetch would hold the rest until then.)
        """
        try:
            self.broker.flush_acks()
            cached, self.message_cache = self.message_cache, []
            ids = []
            for data in cached:
                if data is None:
                    continue
                try:
                    ids.append(dramatiq.Message.decode(data).options["redis_message_id"])
                except (DecodeError, KeyError):
                    continue  # what cannot be read is dealt with when fetched again
            if ids:
                self.broker.do_requeue(self.queue_name, *ids)
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        finally:
            self._waker.unregister(self.queue_name, self._wake)
            super().close()


# The worker


class LaneableWorker(Worker):
    """Dramatiq's worker whose consumer and worker threads are made by methods a subclass overrides.

    Dramatiq's ``Worker.start`` calls its private ``_add_consumer`` for each queue (and delay
    queue) and ``_add_worker`` for each worker thread; here they are :meth:`add_consumer` and
    :meth:`add_worker_thread`, Dramatiq's unless overridden.
    """

    def _add_consumer(self, queue_name: str, *, delay: bool = False) -> None:
        self.add_consumer(queue_name, delay=delay)

    def _add_worker(self) -> None:
        self.add_worker_thread()

    def add_consumer(self, queue_name: str, *, delay: bool = False) -> None:
        """Start the consumer thread of ``queue_name`` (``delay``: a delay queue), as Dramatiq does."""
        super()._add_consumer(queue_name, delay=delay)

    def add_worker_thread(self) -> None:
        """Start one more worker thread, as Dramatiq does."""
        super()._add_worker()

    def start_consumer(self, queue_name: str, prefetch: int, work_queue: PriorityQueue[Any]) -> None:
        """Start a consumer thread of ``queue_name`` feeding ``work_queue`` (once per queue)."""
        if queue_name in self.consumers:
            return
        consumer = self.consumers[queue_name] = ConsumerThread(
            broker=self.broker,
            queue_name=queue_name,
            prefetch=prefetch,
            work_queue=work_queue,
            worker_timeout=self.worker_timeout,
        )
        consumer.start()

    def start_worker_thread(self, work_queue: PriorityQueue[Any]) -> None:
        """Start one more worker thread, taking its messages from ``work_queue``."""
        thread = WorkerThread(
            broker=self.broker,
            consumers=self.consumers,
            work_queue=work_queue,
            worker_timeout=self.worker_timeout,
        )
        thread.start()
        self.workers.append(thread)


def consumers_of(worker: dramatiq.Worker) -> dict[str, Any]:
    """The consumer threads of ``worker`` by queue name (delay queues included)."""
    return getattr(worker, "consumers", None) or {}


def worker_threads_of(worker: dramatiq.Worker) -> list[Any]:
    """The worker threads of ``worker`` (each has ``pause()`` and ``resume()``)."""
    return list(getattr(worker, "workers", ()))


def on_consumer_thread() -> bool:
    """Whether the caller runs on one of Dramatiq's consumer threads (which, in a worker, send the
    delayed messages that came due to their queue)."""
    return isinstance(threading.current_thread(), ConsumerThread)


# The command line


def start_cli_processes_with(module: ModuleType) -> None:
    """Make Dramatiq's CLI (in this process) start its processes with ``module``'s ``Process``:
    its ``main`` calls ``multiprocessing.Process`` through the name ``multiprocessing`` of its
    module."""
    from dramatiq import cli  # (the CLI only where a supervisor runs)

    cli.multiprocessing = module  # type: ignore[assignment]


def replace_cli_signal_unblocking(unblock: Callable[[], None]) -> None:
    """Make Dramatiq's CLI call ``unblock`` instead of its ``try_unblock_signals``, which its
    ``main`` calls once its signal handlers are installed (and each process once started)."""
    from dramatiq import cli

    cli.try_unblock_signals = unblock


def build_cli_workers_with(factory: Callable[..., Worker]) -> None:
    """Make Dramatiq's ``worker_process`` (in this process) build its worker with ``factory``: it
    calls ``Worker(broker, queues=..., worker_threads=...)`` through the name ``Worker`` of its
    module, right after it has loaded the broker."""
    from dramatiq import cli

    cli.Worker = factory  # type: ignore[misc,assignment]


# Messages and rate limits


def stuffed_exception(message: MessageProxy) -> BaseException | None:
    """The error Dramatiq stuffed into ``message`` (the failure of its last attempt), if any."""
    return getattr(message, "_exception", None)


class WindowRateLimiterBase(WindowRateLimiter):  # type: ignore[misc]  # Dramatiq's limiter is untyped
    """Dramatiq's window rate limiter whose private ``_acquire`` (what ``acquire()`` runs) is
    :meth:`try_acquire`."""

    def _acquire(self) -> bool:
        return self.try_acquire()

    def try_acquire(self, now: float | None = None) -> bool:
        """Count one run if the window has room; return whether it had (Dramatiq's count)."""
        return bool(super()._acquire())
