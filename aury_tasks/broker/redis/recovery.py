"""Giving a dead worker's messages back, counting the deliveries that died with their worker.

Dramatiq's maintenance puts the unacknowledged messages of a worker whose heartbeat stopped back
on their queue, however often that happened. A task that kills its own process (out of memory,
a crash in a C extension, ``os._exit``) therefore comes back for ever, taking a worker down each
time (Dramatiq PR #383 was declined). Here the same recovery is done first, by one script per
queue, which counts each message's deliveries that ended with a dead worker; the delivery that
reaches ``TASK_MAX_DELIVERIES`` is not given back but dead-lettered, and its record says ``dead``
with the reason ``redelivery_limit``. Dramatiq's maintenance, which runs right after, then finds
nothing left to recover.

A dead worker held more than the task that killed it: the messages it had prefetched, and the
ones its other threads ran. Counting a death against all of them would bury innocent messages
with the guilty one. So a death counts against a message only when the message may have been
running:

- The first time a message is held by a worker that dies, it counts (nothing tells whether it
  had started: marking every start would cost a round trip per task). The message becomes a
  *suspect* (kept in a small hash per queue, with its count).
- A worker learns the queue's suspects with every fetch (in the same round trip), runs its
  suspects one at a time (other messages run beside them as usual), and marks a suspect as
  running on it just before running it. A later death counts against a suspect only if the
  dead worker had marked it: a suspect that was merely prefetched, or waiting for its turn,
  goes back uncounted.

So a message is dead-lettered after its first death plus ``TASK_MAX_DELIVERIES - 1`` deaths
during its own runs, and an innocent message held by a worker that a killer took down is
counted once, not buried with it. A worker stopped gracefully gives its messages back itself
(nothing is counted), and a suspect leaves the hash once it is acknowledged.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

import dramatiq
from dramatiq.common import q_name

from ...redis.scripts import load_script

if TYPE_CHECKING:
    from ..build import AuryRedisBroker

#: The reason a message is dead-lettered with when its deliveries keep dying with their worker.
REDELIVERY_LIMIT = "redelivery_limit"

#: A queue's messages fetched by dead workers given back, the deliveries that reached the limit
#: dead-lettered (``aury_tasks/redis/lua/recover_dead_workers.lua``).
_RECOVER = load_script("recover_dead_workers")


def recover_dead_workers_messages(broker: AuryRedisBroker, queue_name: str) -> list[str] | None:
    """Give ``queue_name``'s messages fetched by dead workers back, at the head of the queue (they
    were fetched before anything waiting there now); return those dead-lettered.

    A worker is dead when its heartbeat is older than the broker's ``heartbeat_timeout``. When
    the caller's own heartbeat is that old too, nobody could beat (Redis stalled, or this process
    was stopped): the others are probably alive, and their messages are left alone this time
    (``None`` is returned); the caller's heartbeat is refreshed either way. A ``heartbeat_timeout``
    of 0 takes every worker for dead, the caller included, as Dramatiq's maintenance does: never a
    stall then.
    """
    canonical = q_name(queue_name)
    keys = broker.keys
    keys_ = [keys.broker_heartbeats(), keys.broker_queue(queue_name),
             keys.broker_messages(queue_name), keys.dead_letters(canonical),
             keys.dead_letter_messages(canonical), keys.suspects(queue_name),
             keys.running_suspects(queue_name), keys.idle_marker(queue_name)]  # fmt: skip
    args = [broker.clock.millis(), broker.heartbeat_timeout, keys.broker_fetched_prefix(), queue_name,
            broker.max_deliveries, broker.broker_id, keys.wake_channel(queue_name)]  # fmt: skip
    stalled, *buried = _RECOVER(broker.client, keys_, args)
    if stalled:
        return None
    return [item.decode() if isinstance(item, bytes) else str(item) for item in buried]


class MarkSuspectsRunning(dramatiq.Middleware):
    """Runs a worker process's suspects one at a time, each marked as running on it first.

    A suspect is a message once held by a worker that died (see the module's text). Marking it
    is one ``HSET``; any other message costs nothing here. Running suspects one at a time is
    what lets a death be blamed on the one suspect that was running.
    """

    def __init__(self) -> None:
        self._one_suspect = threading.Lock()
        self._holding = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        delivery_id = message.options.get("redis_message_id")
        suspects = getattr(broker, "suspects", {}).get(message.queue_name, ())
        if delivery_id in suspects:
            self._one_suspect.acquire()
            self._holding.lock = True
            redis_broker = cast("AuryRedisBroker", broker)  # only the Redis brokers list suspects
            redis_broker.client.hset(
                redis_broker.keys.running_suspects(message.queue_name), delivery_id, redis_broker.broker_id
            )

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:  # fmt: skip
        if getattr(self._holding, "lock", False):
            self._holding.lock = False
            self._one_suspect.release()

    after_skip_message = after_process_message
