"""Dead letters: the messages Dramatiq gave up on, listed, shown, requeued and purged.

Dramatiq moves a message it rejects (out of retries, a ``PermanentError``, an unknown task, too
old) to the queue's dead-letter set, where it stays for 7 days. A requeued dead letter is sent
again as a new task linked to the old one (``retry_of``), with the same arguments and options.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import DecodeError

from ..broker.redis.consumer import UNDECODABLE
from ..core.errors import BrokerFeatureUnsupported, LedgerUnavailable, TaskRecordNotFound
from ..core.keys import KeySpace
from ..core.status import TaskStatus

#: Dead letters read per round trip when a whole queue is walked.
_BATCH = 500

if TYPE_CHECKING:
    from ..tasks.handle import TaskHandle
    from ..tasks.manager import TaskManager


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message."""

    #: The task id (Dramatiq message id).
    task_id: str
    task_name: str
    queue_name: str
    #: UNIX time it was dead-lettered.
    dead_at: float
    args: list[Any]
    kwargs: dict[str, Any]
    #: From the ledger: how the task ended (``failure``, ``dead`` …), and why.
    status: str = ""
    error_type: str = ""
    error_message: str = ""
    #: The broker's id of the dead-lettered copy.
    delivery_id: str = ""


def _kind_of(broker: dramatiq.Broker) -> str:
    """What a broker is called in an error: RabbitMQ, or its class (the stub broker)."""
    name = type(broker).__name__
    return "RabbitMQ" if "rabbitmq" in name.lower() else name


class DeadLetterQueue:
    """The dead letters of one queue (Redis brokers; on another, :class:`BrokerFeatureUnsupported`).

    >>> dlq = tm.dead_letters("emails")
    >>> [letter.task_id for letter in dlq.list()]
    >>> dlq.requeue()        # every one of them, as new tasks
    """

    def __init__(self, manager: TaskManager, queue_name: str) -> None:
        broker = manager.broker
        if not isinstance(broker, RedisBroker):
            raise BrokerFeatureUnsupported(
                "dead-letter listing, requeue and purge (tm.dead_letters, aum dlq)",
                _kind_of(broker),
                "RabbitMQ keeps a queue's dead messages in its own queue <name>.XQ; "
                "tm.retry(task_id) sends a failed task again",
            )
        self.manager = manager
        self.queue_name = queue_name
        self.client = broker.client
        keys = KeySpace(broker.namespace)  # the broker's keys (its namespace is the key prefix)
        self._set = keys.dead_letters(queue_name)
        self._messages = keys.dead_letter_messages(queue_name)

    def __len__(self) -> int:
        return int(self.client.zcard(self._set))

    def list(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Dead letters, newest first."""
        entries = self.client.zrevrange(self._set, offset, offset + limit - 1, withscores=True)
        if not entries:
            return []
        delivery_ids = [_text(delivery_id) for delivery_id, _ in entries]
        bodies = self.client.hmget(self._messages, delivery_ids)
        letters = [
            self._letter(delivery_id, dead_at, body)
            for (delivery_id, (_, dead_at), body) in zip(delivery_ids, entries, bodies, strict=True)
            if body is not None
        ]
        return self._with_records(letters)

    def get(self, task_id: str) -> DeadLetter:
        """The dead letter of ``task_id``.

        Found at once through the task's record (which keeps the dead letter's broker id); a
        queue whose records expired is searched instead.

        Raises:
          TaskRecordNotFound: when no dead letter of this queue has that id.
        """
        letter = self._find(task_id)
        if letter is None:
            raise TaskRecordNotFound(f"no dead letter {task_id} in queue {self.queue_name}")
        return self._with_records([letter])[0]

    def requeue(self, task_ids: builtins.list[str] | None = None) -> dict[str, TaskHandle]:
        """Send dead letters again as new tasks (all of them when ``task_ids`` is ``None``).

        An id that is not a dead letter of this queue is skipped, and so is a message that could
        not be decoded (purge it).

        Returns:
          dict[str, TaskHandle]: old task id -> the new task, which is linked to the old one.
        """
        if task_ids is None:
            letters: Iterable[DeadLetter] = self._all()
        else:
            letters = [letter for letter in map(self._find, task_ids) if letter is not None]
        handles: dict[str, TaskHandle] = {}
        for letter in letters:
            body = self.client.hget(self._messages, letter.delivery_id)
            if body is None or letter.error_type == UNDECODABLE:  # nothing that could be sent again
                continue
            handles[letter.task_id] = self.manager.resend(json.loads(body), retry_of=letter.task_id)
            self.remove(letter.delivery_id)
        return handles

    def remove(self, delivery_id: str) -> None:
        """Drop one dead letter by its broker id."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self._set, delivery_id)
        pipe.hdel(self._messages, delivery_id)
        pipe.execute()

    def purge(self) -> int:
        """Delete every dead letter of the queue; return how many there were."""
        count = len(self)
        self.client.delete(self._set, self._messages)
        return count

    def _find(self, task_id: str) -> DeadLetter | None:
        delivery_id = self._delivery_id(task_id)
        if delivery_id is not None:
            pipe = self.client.pipeline(transaction=False)
            pipe.zscore(self._set, delivery_id)
            pipe.hget(self._messages, delivery_id)
            dead_at, body = pipe.execute()
            if dead_at is not None and body is not None:
                letter = self._letter(delivery_id, dead_at, body)
                if letter.task_id == task_id:
                    return letter
        return next((letter for letter in self._all() if letter.task_id == task_id), None)

    def _delivery_id(self, task_id: str) -> str | None:
        try:
            store = self.manager.store
        except LedgerUnavailable:
            return None
        delivery_id = store.client.hget(store.keys.task_record(task_id), "dead_letter_id")
        return _text(delivery_id) if delivery_id else None

    def _all(self) -> Iterator[DeadLetter]:
        # Newest first, a batch at a time: a dead-letter queue can be large.
        offset = 0
        while entries := self.client.zrevrange(self._set, offset, offset + _BATCH - 1, withscores=True):
            bodies = self.client.hmget(self._messages, [_text(d) for d, _ in entries])
            for (delivery_id, dead_at), body in zip(entries, bodies, strict=True):
                if body is not None:
                    yield self._letter(_text(delivery_id), dead_at, body)
            offset += len(entries)

    def _letter(self, delivery_id: str, dead_at: float, body: bytes | str) -> DeadLetter:
        raw = body if isinstance(body, bytes) else body.encode()
        try:
            dramatiq.Message.decode(raw)
        except DecodeError as exc:  # a message the consumer could not decode (see consumer.py)
            return DeadLetter(
                task_id=delivery_id, task_name="", queue_name=self.queue_name, dead_at=dead_at / 1000,
                args=[], kwargs={}, status=TaskStatus.DEAD.value, error_type=UNDECODABLE,
                error_message=f"{type(exc.error).__name__}: {str(exc.error)[:200]}", delivery_id=delivery_id,
            )  # fmt: skip
        data = json.loads(raw)
        return DeadLetter(
            task_id=data["message_id"],
            task_name=data.get("actor_name", ""),
            queue_name=self.queue_name,
            dead_at=dead_at / 1000,
            args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}),
            delivery_id=delivery_id,
        )

    def _with_records(self, letters: builtins.list[DeadLetter]) -> builtins.list[DeadLetter]:
        try:
            store = self.manager.store
        except LedgerUnavailable:
            return letters
        records = {record.id: record for record in store.get_many(letter.task_id for letter in letters)}
        result = []
        for letter in letters:
            record = records.get(letter.task_id)
            if record is None:
                result.append(letter)
                continue
            result.append(
                DeadLetter(
                    **{
                        **letter.__dict__,
                        "status": record.status.value,
                        "error_type": record.error_type,
                        "error_message": record.error_message or record.reason,
                    }
                )
            )
        return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
