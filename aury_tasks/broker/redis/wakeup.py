"""Waking idle consumers when a message arrives, instead of polling Redis on a timer.

Dramatiq's Redis consumer polls: after an empty fetch it sleeps a growing back-off (up to the
worker timeout, 1 s) and fetches again, so a message sent to an idle worker waits up to a second
and an idle worker process makes several Redis commands a second. Here:

- A fetch that drains its queue (finds fewer messages than it asked for, or none) sets the
  queue's idle marker (:meth:`~aury_tasks.core.keys.KeySpace.idle_marker`) in the same script call. A send
  deletes the marker in its own script call and, if it was there, publishes on the queue's wake
  channel: one ``PUBLISH`` per drained-to-waiting change, none while messages wait in the queue.
  Requeued and recovered messages wake consumers the same way, and a delayed message or a retry
  wakes the consumers of the delay queue (``<queue>.DQ``), which hold it until its time and then
  send it to its queue, waking that queue's consumers.
- Each worker process runs one :class:`Waker` thread, subscribed to every wake channel by one
  pattern, which sets the events its consumers wait on. The same thread keeps the process's
  heartbeat fresh (Dramatiq's, which its fetches used to refresh) and watches for dead workers: a
  newly dead one wakes the consumers, whose next fetch gives its messages back. It beats only
  while every consumer thread of the process keeps turning (each checks in at least once a
  second): a process whose consumer is stuck stops beating, as it would have under Dramatiq, and
  its messages go to other workers.
- A lost signal only delays: after a reconnect the thread wakes every consumer, and an idle
  consumer fetches anyway every :data:`IDLE_FETCH_INTERVAL` seconds (well within the marker's
  lifetime, so a sleeping consumer never loses its marker).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import TYPE_CHECKING

import redis
from loguru import logger

from ...redis.outage import redis_back, redis_lost
from ...redis.scripts import load_script

if TYPE_CHECKING:
    from ..build import AuryRedisBroker

#: Seconds an idle consumer waits for a signal before it fetches anyway (a lost signal's cost).
IDLE_FETCH_INTERVAL = 30.0
#: Lifetime of an idle marker (ms): a consumer that died idle stops costing sends a PUBLISH then.
IDLE_MARKER_TTL_MS = int(3 * IDLE_FETCH_INTERVAL * 1000)
#: How many beats back a worker's heartbeat may have gone stale to be noticed: one missed (a busy
#: moment) is covered; a death noticed by none is still recovered by the 5-minute maintenance.
STALE_WINDOW_BEATS = 3
#: Longest wait for a wake message before the thread looks at its heartbeat and stop flag again.
LISTEN_TIMEOUT = 1.0
#: Seconds between attempts to reconnect the wake subscription after Redis was lost.
RECONNECT_DELAY = 1.0

#: Refresh this process's heartbeat and list the workers whose heartbeat went stale lately and
#: that hold messages of the given queues (``aury_tasks/redis/lua/beat.lua``).
_BEAT = load_script("beat")


class Waker(threading.Thread):
    """A worker process's thread that wakes its consumers and keeps its heartbeat.

    Parameters:
      broker: the process's broker (its client, broker id and heartbeat timeout are used).
    """

    def __init__(self, broker: AuryRedisBroker) -> None:
        super().__init__(name="aury-wakeup", daemon=True)
        self.broker = broker
        #: Set once the subscription is active: until then consumers poll as Dramatiq does.
        self.ready = threading.Event()
        self._events: dict[str, set[threading.Event]] = {}
        # consumer's event -> (queue, when it last checked in, monotonic s)
        self._turns: dict[threading.Event, tuple[str, float]] = {}
        self._stuck_said: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._dead_seen: set[str] = set()
        self._prefix = broker.keys.wake_channel("")
        #: This thread's own channel: :meth:`stop` publishes on it so the read ends at once.
        self._stop_channel = broker.keys.wake_stop_channel(uuid.uuid4().hex)
        #: Set when the stop message was read (the thread ended without waiting for a timeout).
        self.stop_heard = threading.Event()
        #: Seconds between heartbeats: a third of the timeout, as a fetch every so often gave.
        self.beat_interval = max(0.2, broker.heartbeat_timeout / 1000 / 3)

    def register(self, queue_name: str) -> threading.Event:
        """An event set whenever ``queue_name`` may have messages for an idle consumer."""
        event = threading.Event()
        with self._lock:
            self._events.setdefault(queue_name, set()).add(event)
            self._turns[event] = (queue_name, time.monotonic())
        return event

    def check_in(self, queue_name: str, event: threading.Event) -> None:
        """Say that the consumer waiting on ``event`` is turning (called by it at least once a second)."""
        self._turns[event] = (queue_name, time.monotonic())

    def unregister(self, queue_name: str, event: threading.Event) -> None:
        """Stop setting ``event`` (its consumer closed)."""
        with self._lock:
            self._events.get(queue_name, set()).discard(event)
            self._turns.pop(event, None)

    def wake(self, queue_name: str) -> None:
        """Wake this process's consumers of ``queue_name``."""
        with self._lock:
            events = list(self._events.get(queue_name, ()))
        for event in events:
            event.set()

    def wake_all(self) -> None:
        """Wake every consumer of this process (after a reconnect, or a worker found dead)."""
        with self._lock:
            events = [event for group in self._events.values() for event in group]
        for event in events:
            event.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and wait a little for it.

        A message on the thread's own channel ends its wait for wake messages at once; without
        Redis the thread notices the flag within :data:`LISTEN_TIMEOUT` or its reconnect delay.
        """
        self._stopping.set()
        if self.is_alive():
            # Without Redis the thread is in its reconnect wait, which the flag ends.
            with contextlib.suppress(redis.RedisError, OSError):
                self.broker.client.publish(self._stop_channel, b"")
        self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.broker.client.pubsub()
            try:
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                self.ready.clear()
                redis_lost("wake-up subscription", exc)
                self._stopping.wait(RECONNECT_DELAY)
            finally:
                pubsub.close()

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        pubsub.psubscribe(self.broker.keys.wake_pattern())
        pubsub.subscribe(self._stop_channel)
        redis_back("wake-up subscription")
        next_beat = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._beat()
                next_beat = now + self.beat_interval
            wait = min(LISTEN_TIMEOUT, max(0.0, next_beat - time.monotonic()))
            message = pubsub.get_message(timeout=wait)
            if message is None:
                continue
            if message["type"] == "message":  # on the stop channel: stop() set the flag first
                self.stop_heard.set()
            elif message["type"] == "psubscribe":  # active now: whatever was sent before, fetch it
                self.ready.set()
                self.wake_all()
            elif message["type"] == "pmessage":
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                self.wake(channel[len(self._prefix) :])

    def _beat(self) -> None:
        """Refresh the heartbeat; on a newly dead worker, make recovery due and wake the consumers.

        No beat while a consumer has not checked in for two beat intervals (it is stuck).
        """
        broker = self.broker
        cutoff = time.monotonic() - 2 * self.beat_interval
        stuck = sorted({queue for queue, seen in list(self._turns.values()) if seen < cutoff})
        if stuck:
            if set(stuck) - self._stuck_said:
                logger.warning("the consumer of queue(s) {} has not turned for over {:g} s: this process "
                               "stops beating, so its messages go to other workers",
                               ", ".join(stuck), 2 * self.beat_interval)  # fmt: skip
            self._stuck_said = set(stuck)
            return
        self._stuck_said = set()
        with self._lock:
            queues = sorted(name for name, events in self._events.items() if events)
        dead = _BEAT(broker.client, [broker.keys.broker_heartbeats()],
                     [broker.clock.millis(), broker.broker_id, broker.heartbeat_timeout,
                      int(STALE_WINDOW_BEATS * self.beat_interval * 1000),
                      broker.keys.broker_fetched_prefix(), *queues])  # fmt: skip
        dead_ids = {item.decode() if isinstance(item, bytes) else str(item) for item in dead}
        dead_ids.discard(broker.broker_id)
        if dead_ids - self._dead_seen:
            broker.maintenance_due()
            self.wake_all()
        self._dead_seen = dead_ids
