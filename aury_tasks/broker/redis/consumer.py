"""The Redis consumer: the waking one, except that a message it cannot decode is dead-lettered.

Dramatiq's consumer raises when a fetched message is not a message (bad JSON, bytes that are
not UTF-8, missing fields); its worker thread logs the traceback and restarts the consumer, and
the message, still unacknowledged, comes back after the heartbeat timeout: a restart loop, for
ever (Dramatiq PR #375, open). Here the message is moved to the queue's dead letters at once,
logged in one line (its start only), and the consumer carries on with the next message.

It also gives back, before its first fetch, the messages its worker fetched but no longer holds.
A fetch whose reply was lost (Redis killed between running it and answering) leaves messages
fetched that the worker never saw, and a consumer that loses its connection makes Dramatiq forget
the delayed messages it held. Both stay in the fetched set of a worker whose heartbeat is fresh,
so no maintenance gives them back while it lives (Dramatiq issue #527). Each consumer therefore
keeps, per queue and process, the delivery ids it handed to the worker until they are settled;
a new consumer (one is made at start), and a consumer whose fetch lost its connection once Redis
answers again, requeue the rest.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed, DecodeError
from loguru import logger

from ...core.status import TaskStatus
from .dramatiq_internals import WakingRedisConsumer

#: The reason an undecodable message is dead-lettered with (shown by ``aum dlq list``).
UNDECODABLE = "undecodable"
#: Bytes of an undecodable message shown in its log line.
SHOWN_BYTES = 60

# (broker id, queue) -> delivery ids handed to the worker and not yet acked, nacked or requeued.
_held: dict[tuple[str, str], set[str]] = {}
_held_lock = threading.Lock()


class PoisonSafeRedisConsumer(WakingRedisConsumer):
    """Dramatiq's Redis consumer that dead-letters what it cannot decode and gives back what it forgot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held_key = (self.broker.broker_id, self.queue_name)
        self._gave_back = False
        if self.queue_name.endswith(".DQ"):  # Dramatiq keeps no delayed message across consumers
            with _held_lock:
                _held.pop(self._held_key, None)

    def __next__(self) -> Any:
        if not self._gave_back:
            try:
                self._give_back_forgotten()
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self.connection_lost(error)
                return None
        while True:
            try:
                proxy = super().__next__()
            except DecodeError as exc:  # the message was taken off the cache: it is ours to settle
                self._dead_letter(exc)
                continue
            if proxy is not None:
                with _held_lock:
                    _held.setdefault(self._held_key, set()).add(proxy.options["redis_message_id"])
            return proxy

    def connection_lost(self, error: Exception) -> None:
        """As the consumer's, and give back, once Redis answers, what a fetch whose reply was lost
        took (as a new consumer would: Dramatiq starts one after a lost connection)."""
        self._gave_back = False
        super().connection_lost(error)

    def _ack_sent(self, message: Any) -> None:
        self._settle([message])

    def nack(self, message: Any) -> None:
        super().nack(message)
        self._settle([message])

    def requeue(self, messages: Iterable[Any]) -> None:
        messages = list(messages)
        super().requeue(messages)
        self._settle(messages)

    def _settle(self, messages: list[Any]) -> None:
        with _held_lock:
            held = _held.get(self._held_key, set())
            for message in messages:
                held.discard(message.options.get("redis_message_id"))

    def _give_back_forgotten(self) -> None:
        """Requeue the messages of this queue fetched by this worker that it does not hold."""
        with _held_lock:
            held = set(_held.get(self._held_key, ()))
        # (an id acked since `held` was read is no longer fetched either)
        members = self.broker.client.smembers(self.broker.keys.broker_fetched(*self._held_key))
        fetched = {item.decode() for item in members}
        forgotten = sorted(fetched - held)
        if forgotten:
            self.broker.do_requeue(self.queue_name, *forgotten)
        self._gave_back = True
        if forgotten:
            logger.warning("gave back {} message(s) of queue {} fetched before a connection loss",
                           len(forgotten), self.queue_name)  # fmt: skip

    def _dead_letter(self, exc: DecodeError) -> None:
        data: bytes = exc.data if isinstance(exc.data, bytes) else str(exc.data).encode()
        try:
            delivery_id = self._delivery_id(data)
            if delivery_id is not None:
                self.broker.do_nack(self.queue_name, delivery_id)
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        shown = repr(data[:SHOWN_BYTES]) + (f" … ({len(data):,} bytes)" if len(data) > SHOWN_BYTES else "")
        cause = f"{type(exc.error).__name__}: {str(exc.error)[:120]}"
        logger.error("undecodable message {} on queue {} dead-lettered ({}); it begins {}",
                     delivery_id or "(not found)", self.queue_name, cause, shown)  # fmt: skip
        self._record(data, delivery_id, exc)

    def _delivery_id(self, data: bytes) -> str | None:
        """The broker's id of the fetched message whose body is ``data`` (among this consumer's)."""
        client = self.broker.client
        fetched = sorted(
            client.smembers(self.broker.keys.broker_fetched(self.broker.broker_id, self.queue_name))
        )
        if not fetched:
            return None
        bodies = client.hmget(self.broker.keys.broker_messages(self.queue_name), fetched)
        for delivery_id, body in zip(fetched, bodies, strict=True):
            if body == data:
                return delivery_id.decode() if isinstance(delivery_id, bytes) else str(delivery_id)
        return None

    def _record(self, data: bytes, delivery_id: str | None, exc: DecodeError) -> None:
        """Mark the task ``dead`` in the ledger when its id can be read from the broken message."""
        try:
            fields = json.loads(data)
            task_id = fields["message_id"] if isinstance(fields, dict) else None
        except (ValueError, KeyError):
            return
        if not isinstance(task_id, str):
            return
        store = getattr(self.broker, "ledger", None)  # set on the brokers aury-tasks composes
        if store is not None:
            with contextlib.suppress(redis.RedisError):  # the dead letter is what matters
                store.transition(
                    task_id, TaskStatus.DEAD, queue_name=q_name(self.queue_name),
                    task_name=str(fields.get("actor_name") or ""), finished_at=time.time(),
                    reason=f"{UNDECODABLE}: {type(exc.error).__name__}: {exc.error}",
                    dead_letter_id=delivery_id or "",
                )  # fmt: skip
