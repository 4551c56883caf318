-- enqueue(heartbeats, messages, queue, idle, now, broker_id, message_id, message, wake_channel):
-- one send, as Dramatiq's dispatch "enqueue" does it, waking idle consumers of the queue.
-- heartbeats    broker heartbeats (sorted set: broker id -> last call, ms)
-- messages      the queue's messages (hash: message id -> message)
-- queue         the queue (list of message ids)
-- idle          the queue's idle marker (set by a fetch that found nothing)
-- now           now in ms
-- broker_id     the sending broker's id, whose heartbeat is refreshed
-- message_id    the message's id in the broker
-- message       the encoded message
-- wake_channel  the queue's wake channel, told when the idle marker was there
-- Returns nothing.
local function enqueue(heartbeats, messages, queue, idle, now, broker_id, message_id, message, wake_channel)
    redis.call("zadd", heartbeats, now, broker_id)
    redis.call("hset", messages, message_id, message)
    redis.call("rpush", queue, message_id)
    if redis.call("del", idle) == 1 then
        redis.call("publish", wake_channel, "")
    end
end
