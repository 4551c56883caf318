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
from dramatiq.common import current_millis, q_name

from ...core import keys
from ...redis.scripts import LuaScript

if TYPE_CHECKING:
    from ..build import AuryRedisBroker

#: The reason a message is dead-lettered with when its deliveries keep dying with their worker.
REDELIVERY_LIMIT = "redelivery_limit"

# KEYS: heartbeats, queue list, queue messages, dead letters, dead letter messages, suspects
#       (delivery id -> deaths counted), running suspects (delivery id -> worker), idle marker
# ARGV: now (ms), heartbeat timeout (ms), prefix of the workers' fetched sets, queue name,
#       max deliveries, the caller's broker id, wake channel
# Returns 1 and nothing else when the caller's own heartbeat was stale (a stall: recover nothing),
# else 0 followed by the ids of the messages dead-lettered.
_RECOVER = LuaScript("""
local heartbeats, queue, messages, dead, dead_messages = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local suspects, running = KEYS[6], KEYS[7]
local now, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local fetched_prefix, queue_name, max_deliveries = ARGV[3], ARGV[4], tonumber(ARGV[5])
local own = redis.call("zscore", heartbeats, ARGV[6])
redis.call("zadd", heartbeats, now, ARGV[6])
if own and now - tonumber(own) > timeout then
    return {1}
end
local buried = {0}
local requeued = 0
for _, worker in ipairs(redis.call("zrangebyscore", heartbeats, 0, now - timeout)) do
    local fetched = fetched_prefix .. worker .. "." .. queue_name
    for _, id in ipairs(redis.call("smembers", fetched)) do
        local body = redis.call("hget", messages, id)
        if body then
            local deaths = tonumber(redis.call("hget", suspects, id) or "0")
            if deaths == 0 or redis.call("hget", running, id) == worker then
                deaths = deaths + 1
            end
            redis.call("hdel", running, id)
            if deaths >= max_deliveries then
                redis.call("zadd", dead, now, id)
                redis.call("hset", dead_messages, id, body)
                redis.call("hdel", messages, id)
                redis.call("hdel", suspects, id)
                buried[#buried + 1] = id
            else
                redis.call("hset", suspects, id, deaths)
                redis.call("rpush", queue, id)
                requeued = requeued + 1
            end
        end
    end
    redis.call("del", fetched)
end
for _, id in ipairs(redis.call("hkeys", suspects)) do
    if redis.call("hexists", messages, id) == 0 then
        redis.call("hdel", suspects, id)
        redis.call("hdel", running, id)
    end
end
if requeued > 0 and redis.call("del", KEYS[8]) == 1 then
    redis.call("publish", ARGV[7], "")
end
return buried
""")


def recover_dead_workers_messages(broker: AuryRedisBroker, queue_name: str) -> list[str] | None:
    """Give ``queue_name``'s messages fetched by dead workers back; return those dead-lettered.

    A worker is dead when its heartbeat is older than the broker's ``heartbeat_timeout``. When
    the caller's own heartbeat is that old too, nobody could beat (Redis stalled, or this process
    was stopped): the others are probably alive, and their messages are left alone this time
    (``None`` is returned); the caller's heartbeat is refreshed either way.
    """
    canonical = q_name(queue_name)
    keys_ = [f"{keys.BROKER_NAMESPACE}:__heartbeats__", keys.broker_queue(queue_name),
             keys.broker_messages(queue_name), keys.dead_letters(canonical),
             keys.dead_letter_messages(canonical), keys.suspects(queue_name),
             keys.running_suspects(queue_name), keys.idle_marker(queue_name)]  # fmt: skip
    args = [current_millis(), broker.heartbeat_timeout, f"{keys.BROKER_NAMESPACE}:__acks__.", queue_name,
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
                keys.running_suspects(message.queue_name), delivery_id, redis_broker.broker_id
            )

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:  # fmt: skip
        if getattr(self._holding, "lock", False):
            self._holding.lock = False
            self._one_suspect.release()

    after_skip_message = after_process_message
