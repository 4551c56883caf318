"""Priority bands on the Redis broker: a message sent with a priority is fetched first.

Dramatiq's Redis broker keeps one list of message ids per queue and fetches from its head, first
in, first out. A message whose ``options["priority"]`` is 1 to 9 (``send_with_options(priority=…)``
or the task's own priority) is stored as any other (its body in the queue's ``.msgs`` hash), but
its id goes to the queue's priority set (:func:`aury_tasks.keys.priority_queue`) instead of the
list, scored highest priority first, then in the order sent. Every fetch first moves as many ids
as it is about to take from that set to the head of the list, in the same round trip, so the
highest-priority, oldest message waiting is fetched first. With none waiting, that costs one
``ZPOPMIN`` of an empty key. Priority 0, the default, takes Dramatiq's own path, untouched.

Delayed messages and retries wait in the delay queue as usual and join the priority set when
due (the worker's re-enqueue carries the message's options). What a priority does not survive:

- A message given back to its queue (a worker stopping with messages it prefetched, a dead
  worker's messages recovered, see :mod:`aury_tasks.recovery`) goes to the back of the list:
  it is delivered again, without its priority that time.
- A worker orders the messages it has already fetched (its prefetch: 2 per thread) by the task's
  priority (Dramatiq's ``actor.priority``), not the message's: a priority given at send time
  overtakes at most that many fetched messages.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from . import keys
from .store.scripts import LuaScript, Write

#: The highest priority; 0 is the lowest and the default.
MAX_PRIORITY = 9

#: Score distance between two priorities in the priority set: room for that many sends of one
#: priority (the sequence) while every score stays an exact integer in a double.
_BAND = 10**14

# A send with a priority: Dramatiq's enqueue (heartbeat, message body), with the id put in the
# priority set instead of the list.
# KEYS: heartbeats, queue messages, priority set, priority sequence
# ARGV: now (ms), broker id, message id, message, score of the priority's band
_ENQUEUE = LuaScript("""
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
redis.call("hset", KEYS[2], ARGV[3], ARGV[4])
redis.call("zadd", KEYS[3], tonumber(ARGV[5]) + redis.call("incr", KEYS[4]), ARGV[3])
""")

# Before a fetch: move up to ARGV[1] ids, best first, from the priority set to the list's head
# (Dramatiq's fetch pops from the head), pushing the best last so that it ends up first.
# KEYS: priority set, queue list  ARGV: how many
# Returns how many ids were moved.
_PROMOTE = LuaScript("""
local popped = redis.call("zpopmin", KEYS[1], ARGV[1])
for i = #popped - 1, 1, -2 do
    redis.call("lpush", KEYS[2], popped[i])
end
return #popped / 2
""")


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
    queue_name: str, redis_message_id: str, data: bytes, priority: int, *, broker_id: str, now_ms: int
) -> Write:
    """The script call that enqueues one message of ``priority`` (1 or more) on ``queue_name``.

    Parameters:
      queue_name: the queue (never a delay queue: a delayed message goes there as usual).
      redis_message_id: the message's id in the broker (``options["redis_message_id"]``).
      data: the encoded message.
      priority: 1 to :data:`MAX_PRIORITY`.
      broker_id: the sending broker's id, whose heartbeat the call refreshes as Dramatiq's would.
      now_ms: the time of the send, in ms.
    """
    return Write(
        _ENQUEUE,
        [keys.broker_heartbeats(), keys.broker_messages(queue_name), keys.priority_queue(queue_name),
         keys.priority_sequence(queue_name)],
        [now_ms, broker_id, redis_message_id, data, (MAX_PRIORITY - priority) * _BAND],
    )  # fmt: skip


def promote_write(queue_name: str, count: int) -> Write:
    """The script call that moves up to ``count`` ids of ``queue_name``'s priority set to its list's head.

    Sent just before a fetch of ``count`` messages, in the same round trip.
    """
    return Write(_PROMOTE, [keys.priority_queue(queue_name), keys.broker_queue(queue_name)], [max(count, 1)])
