"""Giving a dead worker's messages back, counting the deliveries that died with their worker.

Dramatiq's maintenance puts the unacknowledged messages of a worker whose heartbeat stopped back
on their queue, however often that happened. A task that kills its own process (out of memory,
a crash in a C extension, ``os._exit``) therefore comes back for ever, taking a worker down each
time (Dramatiq PR #383 was declined). Here the same recovery is done first, by one script per
queue, which also counts each message's deliveries that ended with a dead worker; the delivery
that reaches ``TASK_MAX_DELIVERIES`` is not given back but dead-lettered, and its record says
``dead`` with the reason ``redelivery_limit``. Dramatiq's maintenance, which runs right after,
then finds nothing left to recover.

A worker stopped gracefully gives its messages back itself (not counted); a message that
succeeds after a crash keeps its count only until the count's key expires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dramatiq.common import current_millis, q_name

from . import keys
from .store.scripts import LuaScript

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker

#: The reason a message is dead-lettered with when its deliveries keep dying with their worker.
REDELIVERY_LIMIT = "redelivery_limit"

# KEYS: heartbeats, queue list, queue messages, dead letters, dead letter messages
# ARGV: now (ms), heartbeat timeout (ms), prefix of the workers' fetched sets, queue name,
#       max deliveries, prefix of the delivery counts, seconds a count is kept
# Returns the ids of the messages dead-lettered.
_RECOVER = LuaScript("""
local heartbeats, queue, messages, dead, dead_messages = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local fetched_prefix, queue_name, max_deliveries = ARGV[3], ARGV[4], tonumber(ARGV[5])
local count_prefix, count_ttl = ARGV[6], tonumber(ARGV[7])
local buried = {}
for _, worker in ipairs(redis.call("zrangebyscore", heartbeats, 0, now - timeout)) do
    local fetched = fetched_prefix .. worker .. "." .. queue_name
    for _, id in ipairs(redis.call("smembers", fetched)) do
        local body = redis.call("hget", messages, id)
        if body then
            local count_key = count_prefix .. id
            local deliveries = redis.call("incr", count_key)
            redis.call("expire", count_key, count_ttl)
            if deliveries >= max_deliveries then
                redis.call("zadd", dead, now, id)
                redis.call("hset", dead_messages, id, body)
                redis.call("hdel", messages, id)
                redis.call("del", count_key)
                buried[#buried + 1] = id
            else
                redis.call("rpush", queue, id)
            end
        end
    end
    redis.call("del", fetched)
end
return buried
""")


def recover_dead_workers_messages(broker: RedisBroker, queue_name: str, max_deliveries: int) -> list[str]:
    """Give ``queue_name``'s messages fetched by dead workers back; return those dead-lettered.

    A worker is dead when its heartbeat is older than the broker's ``heartbeat_timeout``.
    """
    canonical = q_name(queue_name)
    keys_ = [f"{keys.BROKER_NAMESPACE}:__heartbeats__", keys.broker_queue(queue_name),
             keys.broker_messages(queue_name), keys.dead_letters(canonical),
             keys.dead_letter_messages(canonical)]  # fmt: skip
    args = [current_millis(), broker.heartbeat_timeout, f"{keys.BROKER_NAMESPACE}:__acks__.", queue_name,
            max_deliveries, keys.delivery_count(""), keys.DEAD_MESSAGE_TTL_MS // 1000]  # fmt: skip
    buried: Any = _RECOVER(broker.client, keys_, args)
    return [item.decode() if isinstance(item, bytes) else str(item) for item in buried or []]
