"""The Redis broker aury-tasks builds: time-based maintenance, ledger writes riding along, bulk sends.

Its lower floor, the overrides of Dramatiq's Redis broker internals, is
:mod:`aury_tasks.broker.redis.base`; the ledger reaches it only through :attr:`AuryRedisBroker.ledger`
and :attr:`AuryRedisBroker.riders`, which the stack that composes a broker sets
(:mod:`aury_tasks.tasks.stack`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.errors import DecodeError
from loguru import logger

from ...core.encoding import encode_message
from ...core.ids import new_ids
from ...core.status import TaskStatus
from ...redis.scripts import SEND_RECORD, TRANSITION, Write, run_chunks
from .base import (
    ENQUEUE,
    SEND_MANY,
    TRACKED_ENQUEUE,
    TRACKED_SEND,
    FastRedisBroker,
    load_scripts,
    prepare_for_enqueue,
    send_record_args,
)
from .consumer import PoisonSafeRedisConsumer
from .priority import ENQUEUE_WITH_PRIORITY, message_priority
from .recovery import REDELIVERY_LIMIT, MarkSuspectsRunning, recover_dead_workers_messages
from .riders import LedgerTransitions


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
        #: Where the broker records a task it dead-lettered itself (set by the stack that composed it).
        self.ledger: LedgerTransitions | None = None
        #: Whether ``before_enqueue`` sends its ledger write at once (the ledger is on another Redis),
        #: so that :meth:`enqueue_many` checks every message before the first write.
        self.ledger_writes_at_once = False

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
        prepared, encoded = self._announce_many(messages, owned=owned)
        load_scripts(self.client, BULK_SCRIPTS)
        for start in range(0, len(prepared), BULK_ROUND_TRIP):
            stop = min(start + BULK_ROUND_TRIP, len(prepared))
            batches = (
                (index, min(index + BULK_BATCH_SIZE, stop)) for index in range(start, stop, BULK_BATCH_SIZE)
            )
            calls = (self._bulk_calls(prepared, encoded, first, last) for first, last in batches)
            run_chunks(self.client, calls, wait=self.replica_wait)
            for message, delay in prepared[start:stop]:
                self.emit_after("enqueue", message, delay)
        return [message for message, _ in prepared]

    def _announce_many(
        self, messages: Sequence[tuple[dramatiq.Message[Any], int | None]], *, owned: bool
    ) -> tuple[list[tuple[dramatiq.Message[Any], int | None]], list[tuple[bytes, int]]]:
        """Each message prepared as :meth:`enqueue` would, announced (``before_enqueue``) and encoded:
        ``(message, delay)`` and ``(body, priority)`` each. Nothing is sent; when one fails, the
        ledger writes parked for them all are dropped."""
        broker_ids = new_ids(len(messages))
        # (the server's clock only for an eta: reading it may take a round trip, the first time)
        now_ms = self.clock.millis() if any(delay is not None for _, delay in messages) else None
        prepared = [
            (prepare_for_enqueue(message, delay, owned=owned, broker_id=broker_id, now_ms=now_ms), delay)
            for (message, delay), broker_id in zip(messages, broker_ids, strict=True)
        ]
        if self.ledger_writes_at_once:  # before_enqueue would write to the ledger: check all first
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
        return prepared, encoded

    def _bulk_calls(
        self,
        prepared: list[tuple[dramatiq.Message[Any], int | None]],
        encoded: list[tuple[bytes, int]],
        start: int,
        stop: int,
    ) -> list[Write]:
        """The script calls that send ``prepared[start:stop]``: runs of messages to one queue, without
        priority, with a new record's write (or none) in one SEND_MANY call each; any other message
        in its own call(s)."""
        riders = self.riders
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
                calls += self.calls_with_riders(
                    queue_name, redis_message_id, data, priority, parked, before=[]
                )
            else:
                run.append((redis_message_id, data, record_args))
                run_queue = queue_name
        if run:
            calls.append(self.send_many_write(run_queue, run))
        return calls

    def flush(self, queue_name: str) -> None:
        """Drop every message of ``queue_name``: its priority set, its list and its delay queue."""
        self.client.delete(self.keys.priority_queue(queue_name), self.keys.priority_sequence(queue_name))
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
            body = self.client.hget(self.keys.dead_letter_messages(q_name(queue_name)), delivery_id)
            try:
                message = dramatiq.Message.decode(body)
            except DecodeError:
                continue  # cannot say which task: the dead letter is there all the same
            logger.error("task {} ({}) dead-lettered: {} of its deliveries ended with its worker dead",
                         message.message_id, message.actor_name, self.max_deliveries)  # fmt: skip
            if self.ledger is not None:
                self.ledger.transition(
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


def _check_encodable(message: dramatiq.Message[Any]) -> None:
    """Encode ``message`` as it will be sent (the ledger takes its metadata out first), or raise."""
    if "metadata" in message.options:
        options = {key: value for key, value in message.options.items() if key != "metadata"}
        message = dataclasses.replace(message, options=options)
    message.encode()
