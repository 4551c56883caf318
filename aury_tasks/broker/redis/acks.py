"""Acknowledgements sent in batches by one thread, instead of one round trip per task.

Dramatiq's worker thread acknowledges each message itself: with a task's final ledger write
riding on it, that is one script call, one socket write and one read per task, and a thread that
blocks for the reply and then waits for the GIL again. A worker process spent about a third of
its CPU there. Here a worker thread hands the acknowledgement (and the writes riding on it) to the
process's :class:`AckSender` and goes on with its next task; the sender writes every
acknowledgement waiting at that moment in one round trip, then the next batch.

Delivery stays at-least-once. A message stays unacknowledged in Redis, and in the consumer's
record of what it holds, until its acknowledgement has been sent: a worker killed with
acknowledgements still waiting loses nothing, those tasks run again. A connection error keeps the
batch and sends it again once Redis answers (Dramatiq's worker thread retries an ack the same way).
Sending an acknowledgement or a final ledger write twice is harmless: the ack forgets a message
this worker no longer holds, and a final write to a record that has ended is refused.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from loguru import logger

from ...core.errors import ReplicationTimeout
from ...core.redaction import redact_text
from ...redis.outage import redis_back, redis_lost
from ...redis.scripts import ReplicaWait, Write, run_calls

#: Seconds between attempts to send a batch while Redis cannot be reached.
RETRY_DELAY = 1.0
#: Acknowledgements sent in one round trip at most (more wait for the next).
MAX_BATCH = 500


@dataclass(slots=True)
class PendingAck:
    """One message's acknowledgement: its script calls, and what to call once they were sent."""

    calls: list[Write]
    on_sent: Callable[[], None] | None = None


class AckSender(threading.Thread):
    """A worker process's thread that sends acknowledgements in batches.

    Parameters:
      client: the broker's Redis client.
      wait: the replicas each batch waits for (one ``WAIT`` a batch); a batch they did not all
        have in time is sent again, as after a lost connection.
    """

    def __init__(self, client: redis.Redis, *, wait: ReplicaWait | None = None) -> None:
        super().__init__(name="aury-acks", daemon=True)
        self._client = client
        self._wait = wait
        self._queue: queue.SimpleQueue[PendingAck | threading.Event | None] = queue.SimpleQueue()
        self._stopping = False
        #: False while a batch waits for Redis to answer again.
        self.connected = True
        #: Acknowledgements sent, and the round trips they took.
        self.acks_sent = 0
        self.batches_sent = 0

    def submit(self, calls: list[Write], on_sent: Callable[[], None] | None = None) -> None:
        """Send ``calls`` (one message's acknowledgement) with the next batch."""
        self._queue.put(PendingAck(calls, on_sent))

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was sent; ``False`` if ``timeout`` s went by first."""
        if not self.is_alive():
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Send what waits (for up to ``timeout`` s), then end the thread."""
        if self.is_alive() and not self.flush(timeout):
            logger.warning("acknowledgements not sent within {:g} s: those tasks will run again", timeout)
        self._stopping = True
        self._queue.put(None)

    def run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            item = get()
            batch: list[PendingAck] = []
            flushes: list[threading.Event] = []
            while True:
                if item is None:
                    self._send(batch)
                    for event in flushes:
                        event.set()
                    return
                if isinstance(item, threading.Event):
                    flushes.append(item)
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            self._send(batch)
            for event in flushes:
                event.set()

    def _send(self, batch: list[PendingAck]) -> None:
        """Send ``batch`` in one round trip, waiting out a lost connection; then its callbacks."""
        if not batch:
            return
        calls = [call for ack in batch for call in ack.calls]
        while True:
            try:
                replies = run_calls(self._client, calls, raise_errors=False, wait=self._wait)
                self.connected = True
                redis_back("acknowledgements")
                break
            except (redis.ConnectionError, redis.TimeoutError, ReplicationTimeout) as exc:
                self.connected = False
                if self._stopping:
                    return
                redis_lost("acknowledgements", exc)
                time.sleep(RETRY_DELAY)
        self.batches_sent += 1
        replies_of = iter(replies)
        for ack in batch:
            self._settle(ack, [next(replies_of) for _ in ack.calls])

    def _settle(self, ack: PendingAck, replies: list[object]) -> None:
        """Hand ``ack``'s replies to its calls and call it back; log it instead if one failed."""
        failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if failed is not None:
            logger.error("could not acknowledge a message (it stays with this worker): {}",
                         redact_text(str(failed)))  # fmt: skip
            return
        self.acks_sent += 1
        try:
            for call, reply in zip(ack.calls, replies, strict=True):
                if call.on_reply is not None:
                    call.on_reply(reply)
            if ack.on_sent is not None:
                ack.on_sent()
        except Exception:  # a callback's failure must not stop the next batches
            logger.exception("an acknowledgement's callback failed")
