"""Ledger writes that ride on the broker's own round trips.

A task's enqueue write is made on the thread that sends it, just before Dramatiq's enqueue
script call; its final write on the thread that acknowledges it, just before the ack (or
nack). Each is parked here under the Redis message id of the call it belongs to, and the
broker sends it in the same pipeline as that call (see
:class:`aury_tasks.broker.redis.broker.AuryRedisBroker`): no extra round trip per task. The write goes
first in the pipeline, so a record exists before its message can be fetched and is final
before the message is acknowledged.

When the ledger lives on another Redis than the broker (or the broker is not Redis), writes
cannot ride and are sent at once instead.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import redis

from ...core.status import TaskStatus
from ...redis.scripts import Write

#: Stands for the encoded message in an enqueue write; the broker puts the real bytes in.
ENCODED_MESSAGE = object()


class LedgerTransitions(Protocol):
    """Where the broker records a task it dead-lettered itself: the ledger, seen from below.

    The broker knows nothing more of the ledger than this; the stack that composes a broker hands
    it the ledger's store (:mod:`aury_tasks.tasks.stack`).
    """

    def transition(self, task_id: str, status: TaskStatus, *, attempt: int = 1, **fields: Any) -> bool:
        """Move the task's record to ``status`` (forward only); ``False`` when refused."""
        ...


class Riders:
    """Writes waiting for their broker call, per thread.

    Parameters:
      client: where writes go when they cannot ride.
      riding: whether the broker picks writes up (``False``: :meth:`add` sends at once).
    """

    def __init__(self, client: redis.Redis, *, riding: bool) -> None:
        self.client = client
        self.riding = riding
        self._local = threading.local()

    def add(self, redis_message_id: str, write: Write, encoded_message: bytes | None = None) -> None:
        """Park ``write`` for the broker call on ``redis_message_id`` (or send it now)."""
        if not self.riding:
            if encoded_message is not None:
                fill_message(write, encoded_message)
            write.run(self.client)
            return
        pending = self._local.__dict__.setdefault("pending", {})
        pending.setdefault(redis_message_id, []).append(write)

    def take(self, redis_message_id: str, *, keep_others: bool = False) -> list[Write] | None:
        """The writes parked for ``redis_message_id``; writes left for any other id are dropped.

        A parked write whose call never came (its message failed to encode) must not ride on
        the next call of the thread. With ``keep_others`` (a bulk send, whose messages were all
        announced before the first is sent), the others stay.
        """
        pending: dict[str, list[Write]] | None = self._local.__dict__.get("pending")
        if not pending:
            return None
        writes = pending.pop(redis_message_id, None)
        if not keep_others:
            pending.clear()
        return writes

    def drop(self) -> None:
        """Forget every write parked by this thread (their messages will not be sent)."""
        pending: dict[str, list[Write]] | None = self._local.__dict__.get("pending")
        if pending:
            pending.clear()


def fill_message(write: Write, encoded_message: bytes | str) -> None:
    """Put the encoded message in place of :data:`ENCODED_MESSAGE` in ``write``."""
    args = write.args
    for index, value in enumerate(args):
        if value is ENCODED_MESSAGE:
            args[index] = encoded_message
            return
