"""aury-tasks's fetch and send on Dramatiq's Redis keys, with the ledger's writes riding along.

aury-tasks replaces three hot paths of Dramatiq's Redis broker (the overrides of Dramatiq's
private parts are :mod:`aury_tasks.broker.redis.dramatiq_internals`; this module works on the
methods it names):

- **Fetch**: Dramatiq's dispatch script only fetches, and aury-tasks also needs priority
  messages promoted and the queue's suspects read in the same round trip. :data:`FETCH` does
  all of it in one script call, on Dramatiq's keys (heartbeat, list, message hash, fetched set),
  pops with one ``LPOP count`` (Redis 6.2 or later), and sets the queue's idle marker when it
  drains the queue, finding fewer messages than asked or none (see :mod:`aury_tasks.broker.redis.wakeup`).
- **Enqueue**: :data:`ENQUEUE` does what Dramatiq's dispatch ``enqueue`` does (heartbeat,
  message body, list) and wakes idle consumers; the ledger's writes ride in the same round trip.
- **The consumer loop**: :class:`~aury_tasks.broker.redis.dramatiq_internals.WakingRedisConsumer`
  waits on an event instead of Dramatiq's back-off timers.

Queue maintenance (giving a dead worker's messages back) stays Dramatiq's: its dispatch script
is called with a command it does not know (``maintain``), which runs the heartbeat and the
maintenance and nothing else, in the same round trip as the fetch or send that made it due.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import redis
from dramatiq.common import current_millis, dq_name

from ...core.encoding import encode_message
from ...core.ids import new_id
from ...core.keys import KeySpace
from ...redis.scripts import (
    SEND_RECORD,
    TRANSITION,
    LuaScript,
    ReplicaWait,
    Write,
    load_script,
    run_calls,
    run_pipelined,
)
from .acks import AckSender
from .dramatiq_internals import DISPATCH, RoutedRedisBroker, WakingRedisConsumer
from .priority import enqueue_write as priority_enqueue_write
from .priority import message_priority
from .riders import ENCODED_MESSAGE, Riders, fill_message
from .signals import HandledSignals
from .wakeup import IDLE_MARKER_TTL_MS, Waker

#: Seconds a closing consumer or broker waits for its acknowledgements to be sent.
ACK_FLUSH_TIMEOUT = 30.0

#: One fetch: heartbeat, priority ids promoted, a batch popped and recorded as fetched, the
#: queue's suspects listed, the idle marker set when nothing was there (``redis/lua/fetch.lua``).
FETCH = load_script("fetch")
#: One send, as Dramatiq's dispatch "enqueue" does it, waking idle consumers (``redis/lua/enqueue.lua``).
ENQUEUE = load_script("enqueue")
#: An acknowledgement, as Dramatiq's dispatch "ack" does it (``redis/lua/ack.lua``).
ACK = load_script("ack")
#: A send and a ledger write in TRANSITION's full form (a retry, a delayed message moved to its
#: queue) in one script call: the enqueue's arguments, where the message goes among the ledger
#: write's (0: nowhere), then the ledger write's (``redis/lua/tracked_enqueue.lua``).
TRACKED_ENQUEUE = load_script("tracked_enqueue")
#: A send and its record's write in the short form of :data:`~aury_tasks.redis.scripts.SEND_RECORD`
#: (the common send), in one script call: the enqueue's 5 arguments, then the send's write's with
#: its message left out (the enqueue's 4th argument is put in its place; ``redis/lua/tracked_send.lua``).
TRACKED_SEND = load_script("tracked_send")
#: An acknowledgement and the task's final record write in one script call (``redis/lua/tracked_ack.lua``).
TRACKED_ACK = load_script("tracked_ack")
#: Many sends to one queue, each with its record's write in the short form of SEND_RECORD (or
#: none), in one script call (``redis/lua/send_many.lua``).
SEND_MANY = load_script("send_many")
#: Wake idle consumers of a queue, after messages were put back on it (``redis/lua/wake.lua``).
WAKE = load_script("wake")


def wake_write(keys: KeySpace, queue_name: str) -> Write:
    """The script call that wakes the idle consumers of ``queue_name`` (under ``keys``), if any."""
    return Write(WAKE, [keys.idle_marker(queue_name)], [keys.wake_channel(queue_name)])


def prepare_for_enqueue(
    message: dramatiq.Message[Any],
    delay: int | None,
    *,
    owned: bool = False,
    broker_id: str | None = None,
    now_ms: int | None = None,
) -> dramatiq.Message[Any]:
    """The message Dramatiq's ``RedisBroker.enqueue`` sends: a copy with a fresh broker id
    (``redis_message_id``), and the delay queue and eta when delayed.

    ``owned``: the message was made for this send and nothing else holds it; undelayed, it gets
    its broker id in its own options instead of in a copy (a copy is about a tenth of a send's
    CPU). ``broker_id``: the id to give (default: a new one). ``now_ms``: the moment the delay
    counts from (the broker's :attr:`~aury_tasks.broker.redis.dramatiq_internals.RoutedRedisBroker.clock`;
    default: this host's clock).
    """
    broker_id = broker_id or new_id()
    if delay is None:
        if owned:
            message.options["redis_message_id"] = broker_id
            return message
        return message.copy(options={"redis_message_id": broker_id})
    options = {"redis_message_id": broker_id, "eta": (current_millis() if now_ms is None else now_ms) + delay}
    return message.copy(queue_name=dq_name(message.queue_name), options=options)


class FastRedisBroker(HandledSignals, RoutedRedisBroker):
    """Dramatiq's Redis broker with aury-tasks's fetch, send and consumer (see the module's text).

    Subclasses decide when queue maintenance is due (:meth:`_maintenance_due_for`) and may park
    ledger writes in :attr:`riders` to ride on sends, acks and nacks.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Every key of this broker: under its ``namespace`` (Dramatiq's dispatch script uses it too).
        self.keys = KeySpace(self.namespace)
        #: Ledger writes waiting for their enqueue/ack/nack (set when the ledger shares this Redis).
        self.riders: Riders | None = None
        #: Per queue, the delivery ids of its suspects as of this process's last fetch from it.
        self.suspects: dict[str, frozenset[str]] = {}
        #: The replicas a send, an ack or a nack waits for (``TASK_BROKER_MIN_REPLICAS``; ``None``: none).
        self.replica_wait: ReplicaWait | None = None
        self._waker: Waker | None = None
        self._waker_lock = threading.Lock()
        self._acks: AckSender | None = None
        self._scripts_loaded = False

    @property
    def waker(self) -> Waker:
        """This process's wake-up thread, started by the first consumer."""
        with self._waker_lock:
            if self._waker is None or not self._waker.is_alive():
                self._waker = Waker(self)  # type: ignore[arg-type]
                self._waker.start()
            return self._waker

    @property
    def acks(self) -> AckSender:
        """This process's acknowledgement thread, started by the first acknowledgement."""
        sender = self._acks
        if sender is None or not sender.is_alive():  # (no lock on the path of every ack)
            with self._waker_lock:
                sender = self._acks
                if sender is None or not sender.is_alive():
                    sender = self._acks = AckSender(self.client, wait=self.replica_wait)
                    sender.start()
        return sender

    def flush_acks(self, timeout: float = ACK_FLUSH_TIMEOUT) -> bool:
        """Wait until every acknowledgement handed to :attr:`acks` was sent (``False``: timed out).

        Returns at once while Redis cannot be reached (the sender keeps trying on its own).
        """
        sender = self._acks
        return sender is None or not sender.connected or sender.flush(timeout)

    def close(self) -> None:
        """Send the acknowledgements still waiting, stop the wake-up thread, then close as Dramatiq does."""
        if self._acks is not None:
            self._acks.stop(ACK_FLUSH_TIMEOUT)
        if self._waker is not None:
            self._waker.stop()
        super().close()

    def _maintenance_due_for(self, command: str, queue_name: str) -> bool:
        """Whether this ``command`` on ``queue_name`` should run queue maintenance first."""
        return False

    def maintenance_due(self) -> None:
        """Make maintenance due on every queue at the next fetch or send (a worker was found dead)."""

    def nack_now(self, queue_name: str, redis_message_id: str) -> None:
        """Dramatiq's nack, with the ledger writes parked for the message in the same round trip."""
        call = self.dispatch_call("nack", queue_name, redis_message_id)
        riders = self.riders.take(redis_message_id) if self.riders is not None else None
        if not riders:
            call.run(self.client)
        else:
            run_pipelined(self.client, riders, call)

    def _maintenance_writes(self, command: str, queue_name: str) -> list[Write]:
        """Dramatiq's maintenance of ``queue_name``, as a call to send first, when due."""
        if not self._maintenance_due_for(command, queue_name):
            return []
        return [self.dispatch_call("maintain", queue_name, maintenance=True)]

    def fetch_batch(self, queue_name: str, count: int) -> list[bytes | None]:
        count = max(1, min(count, self.max_unpack_size()))
        keys = self.keys
        keys_ = [keys.broker_heartbeats(), keys.broker_queue(queue_name), keys.broker_messages(queue_name),
                 keys.broker_fetched(self.broker_id, queue_name), keys.priority_queue(queue_name),
                 keys.suspects(queue_name), keys.idle_marker(queue_name)]  # fmt: skip
        promote = 0 if queue_name.endswith(".DQ") else 1
        fetch = Write(FETCH, keys_, [self.clock.millis(), self.broker_id, count, promote, IDLE_MARKER_TTL_MS])
        calls = [*self._maintenance_writes("fetch", queue_name), fetch]
        self._load_scripts_once()
        *_, (fetched, suspects) = run_calls(self.client, calls)
        self.suspects[queue_name] = frozenset(item.decode() for item in suspects)
        return list(fetched)

    def enqueue_write(self, queue_name: str, redis_message_id: str, data: bytes) -> Write:
        """The script call that sends one encoded message (no priority) to ``queue_name``."""
        keys = self.keys
        keys_ = [keys.broker_heartbeats(), keys.broker_messages(queue_name), keys.broker_queue(queue_name),
                 keys.idle_marker(queue_name)]  # fmt: skip
        args = [self.clock.millis(), self.broker_id, redis_message_id, data, keys.wake_channel(queue_name)]
        return Write(ENQUEUE, keys_, args)

    def send_encoded(self, queue_name: str, redis_message_id: str, data: bytes, priority: int = 0) -> None:
        """Send one encoded message, its parked ledger writes and any due maintenance in one round trip."""
        maintenance = self._maintenance_writes("enqueue", queue_name)
        run_pipelined(
            self.client,
            self.send_calls(queue_name, redis_message_id, data, priority, before=maintenance),
            wait=self.replica_wait,
        )

    def send_calls(
        self,
        queue_name: str,
        redis_message_id: str,
        data: bytes,
        priority: int,
        *,
        before: list[Write],
        keep_others: bool = False,
    ) -> list[Write]:
        """The script calls that send one encoded message with the ledger writes parked for it.

        The ledger's record write and the send become one call when that is the whole of it (the
        common case: :data:`TRACKED_SEND` for a new send, :data:`TRACKED_ENQUEUE` for a retry's or
        a delayed message's write); otherwise the parked writes go first, then
        ``before`` (maintenance), then the send. ``keep_others``: leave the writes parked for
        other messages (a bulk send, which announced all its messages first).
        """
        riders = (
            self.riders.take(redis_message_id, keep_others=keep_others) if self.riders is not None else None
        )
        return self.calls_with_riders(queue_name, redis_message_id, data, priority, riders, before=before)

    def calls_with_riders(
        self,
        queue_name: str,
        redis_message_id: str,
        data: bytes,
        priority: int,
        riders: list[Write] | None,
        *,
        before: list[Write],
    ) -> list[Write]:
        """:meth:`send_calls` with the ledger writes parked for the message already taken."""
        if priority:
            send = priority_enqueue_write(self.keys, queue_name, redis_message_id, data, priority,
                                          broker_id=self.broker_id, now_ms=self.clock.millis())  # fmt: skip
        else:
            send = self.enqueue_write(queue_name, redis_message_id, data)
            if riders and len(riders) == 1 and not before:
                tracked = _tracked(send, riders[0])
                if tracked is not None:
                    return [tracked]
        for write in riders or ():
            fill_message(write, data)
        return [*(riders or ()), *before, send]

    def send_many_write(self, queue_name: str, sends: list[tuple[str, bytes, list[Any]]]) -> Write:
        """The script call (:data:`SEND_MANY`) that sends many encoded messages, none with a
        priority, to ``queue_name``: ``(redis message id, body, record write's arguments)`` each,
        the arguments of the message's :data:`SEND_RECORD` write without its message (or none)."""
        keys = self.keys
        keys_ = [keys.broker_heartbeats(), keys.broker_messages(queue_name), keys.broker_queue(queue_name),
                 keys.idle_marker(queue_name)]  # fmt: skip
        args: list[Any] = [
            self.clock.millis(),
            self.broker_id,
            self.keys.wake_channel(queue_name),
            self.keys.ledger_prefix,
        ]
        for redis_message_id, data, record_args in sends:
            args += (redis_message_id, data, len(record_args), *record_args)
        return Write(SEND_MANY, keys_, args)

    def ack_calls(self, queue_name: str, redis_message_id: str) -> list[Write]:
        """The script calls that acknowledge a message with the ledger writes parked for it."""
        keys_ = [self.keys.broker_heartbeats(), self.keys.broker_fetched(self.broker_id, queue_name),
                 self.keys.broker_messages(queue_name)]  # fmt: skip
        ack = Write(ACK, keys_, [self.clock.millis(), self.broker_id, redis_message_id])
        riders = self.riders.take(redis_message_id) if self.riders is not None else None
        if not riders:
            return [ack]
        tracked = _tracked(ack, riders[0]) if len(riders) == 1 else None
        # The common case: the task's final write and its ack, as one call.
        return [tracked] if tracked is not None else [*riders, ack]

    def ack_now(self, queue_name: str, redis_message_id: str) -> None:
        """Acknowledge a message with the ledger writes parked for it, in one round trip, now."""
        run_pipelined(self.client, self.ack_calls(queue_name, redis_message_id), wait=self.replica_wait)

    def requeue_now(self, queue_name: str, *redis_message_ids: str) -> None:
        """Dramatiq's requeue, waking the queue's idle consumers in the same round trip."""
        requeue = self.dispatch_call("requeue", queue_name, *redis_message_ids)
        run_calls(self.client, [requeue, wake_write(self.keys, queue_name)])

    def enqueue(
        self, message: dramatiq.Message[Any], *, delay: int | None = None, owned: bool = False
    ) -> dramatiq.Message[Any]:
        """Enqueue ``message`` as Dramatiq does, in one round trip with its ledger writes.

        A message of priority 1 or more, not delayed, goes to its queue's priority set (see
        :mod:`aury_tasks.broker.redis.priority`); a delayed one waits in the delay queue as usual. ``owned``:
        see :func:`prepare_for_enqueue`.
        """
        now_ms = None if delay is None else self.clock.millis()
        message = prepare_for_enqueue(message, delay, owned=owned, now_ms=now_ms)
        self.emit_before("enqueue", message, delay)
        priority = message_priority(message) if delay is None else 0
        data = encode_message(message)
        self.send_encoded(message.queue_name, message.options["redis_message_id"], data, priority)
        self.emit_after("enqueue", message, delay)
        return message

    def _load_scripts_once(self) -> None:
        """Load the fetch path's scripts before the first fetch (a NOSCRIPT reply would reorder it)."""
        if not self._scripts_loaded:
            load_scripts(self.client, {FETCH, DISPATCH})
            self._scripts_loaded = True

    @property
    def consumer_class(self) -> type:
        """:class:`WakingRedisConsumer`."""
        return WakingRedisConsumer


def send_record_args(riders: list[Write] | None) -> list[Any] | None:
    """The arguments a :data:`SEND_MANY` call takes for a message's parked ledger writes: those of
    its one :data:`SEND_RECORD` write without its message, ``[]`` for none, ``None`` when they
    cannot go in one (another kind of write, or one that needs its reply)."""
    if not riders:
        return []
    write = riders[0]
    if len(riders) > 1 or write.script is not SEND_RECORD or write.on_reply is not None:
        return None
    return write.args[:-2] if write.args[-1] is ENCODED_MESSAGE else None


def _tracked(call: Write, ledger_write: Write) -> Write | None:
    """An ENQUEUE or ACK ``call`` and a ``ledger_write`` as one script call, or ``None`` if it cannot be.

    A :data:`TRANSITION` write keeps its ``on_reply``: the tracked scripts answer with its reply.
    """
    args = ledger_write.args
    if ledger_write.script is SEND_RECORD:  # a send's write: its message goes last, as a stand-in
        record_args = send_record_args([ledger_write])
        if call.script is not ENQUEUE or record_args is None:  # (None too when it needs its reply)
            return None
        return Write(TRACKED_SEND, [*call.keys, *ledger_write.keys], [*call.args, *record_args])
    if ledger_write.script is not TRANSITION:
        return None
    at = next((index for index, value in enumerate(args) if value is ENCODED_MESSAGE), -1)
    script = TRACKED_ENQUEUE if call.script is ENQUEUE else TRACKED_ACK
    if at >= 0:
        if script is not TRACKED_ENQUEUE:  # only a send has the message to put in
            return None
        args = [*args[:at], "", *args[at + 1 :]]
    return Write(script, [*call.keys, *ledger_write.keys], [*call.args, at + 1, *args], ledger_write.on_reply)


def load_scripts(client: redis.Redis, scripts: set[LuaScript]) -> None:
    """Load the scripts Redis lacks: in a batch, each call answered NOSCRIPT is sent again alone."""
    listed = list(scripts)
    for script, present in zip(listed, client.script_exists(*(s.sha for s in listed)), strict=True):
        if not present:
            client.script_load(script.source)
