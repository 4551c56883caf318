"""Priority bands on the Redis broker: a message sent with a priority is fetched first.

Dramatiq's Redis broker keeps one list of message ids per queue and fetches from its head, first
in, first out. A message whose ``options["priority"]`` is 1 to 9 (``send_with_options(priority=…)``
or the task's own priority) is stored as any other (its body in the queue's ``.msgs`` hash), but
its id goes to the queue's priority set (:meth:`~aury_tasks.core.keys.KeySpace.priority_queue`) instead of the
list, scored highest priority first, then in the order sent. Every fetch first moves as many ids
as it is about to take from that set to the head of the list, in the same script call (see
:data:`aury_tasks.broker.redis.base.FETCH`), so the highest-priority, oldest message waiting is
fetched first. With none waiting, that costs one ``ZPOPMIN`` of an empty key. Priority 0, the
default, takes the ordinary path.

Delayed messages and retries wait in the delay queue as usual and join the priority set when
due (the worker's re-enqueue carries the message's options). What a priority does not survive:

- A message given back to its queue (a worker stopping with messages it prefetched, a dead
  worker's messages recovered, see :mod:`aury_tasks.broker.redis.recovery`) goes to the back of the list:
  it is delivered again, without its priority that time.
- A worker orders the messages it has already fetched (its prefetch: 4 per thread by default) by the task's
  priority (Dramatiq's ``actor.priority``, lower first: a task's is ``-priority``), not the
  message's: a priority given at send time overtakes at most that many fetched messages. (A
  consumer fetches what its window has room for as soon as it arrives, busy threads or not, so
  that ordering covers every message the worker could hold.)
"""

from __future__ import annotations

from typing import Any

import dramatiq

from ...core.keys import KeySpace
from ...redis.scripts import Write, load_script

#: The highest priority; 0 is the lowest and the default.
MAX_PRIORITY = 9

#: Score distance between two priorities in the priority set: room for that many sends of one
#: priority (the sequence) while every score stays an exact integer in a double.
_BAND = 10**14

#: A send with a priority: Dramatiq's enqueue with the id put in the priority set instead of the
#: list, waking idle consumers (``aury_tasks/redis/lua/enqueue_with_priority.lua``).
ENQUEUE_WITH_PRIORITY = load_script("enqueue_with_priority")


def message_priority(message: dramatiq.Message[Any]) -> int:
    """The priority of ``message`` (``options["priority"]``), 0 to :data:`MAX_PRIORITY`.

    A value that is not a number counts as 0; one out of range is brought into it.
    """
    value = message.options.get("priority")
    if not value:
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return min(max(number, 0), MAX_PRIORITY)


def enqueue_write(
    keys: KeySpace,
    queue_name: str,
    redis_message_id: str,
    data: bytes,
    priority: int,
    *,
    broker_id: str,
    now_ms: int,
) -> Write:
    """The script call that enqueues one message of ``priority`` (1 or more) on ``queue_name``.

    Parameters:
      keys: the sending broker's keys.
      queue_name: the queue (never a delay queue: a delayed message goes there as usual).
      redis_message_id: the message's id in the broker (``options["redis_message_id"]``).
      data: the encoded message.
      priority: 1 to :data:`MAX_PRIORITY`.
      broker_id: the sending broker's id, whose heartbeat the call refreshes as Dramatiq's would.
      now_ms: the time of the send, in ms.
    """
    return Write(
        ENQUEUE_WITH_PRIORITY,
        [keys.broker_heartbeats(), keys.broker_messages(queue_name), keys.priority_queue(queue_name),
         keys.priority_sequence(queue_name), keys.idle_marker(queue_name)],
        [now_ms, broker_id, redis_message_id, data, (MAX_PRIORITY - priority) * _BAND,
         keys.wake_channel(queue_name)],
    )  # fmt: skip
