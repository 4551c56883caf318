-- ack(heartbeats, fetched, messages, now, broker_id, message_id): an acknowledgement, as
-- Dramatiq's dispatch "ack" does it: heartbeat, then the message forgotten if this worker held it.
-- heartbeats  broker heartbeats (sorted set: broker id -> last call, ms)
-- fetched     this worker's fetched set of the queue
-- messages    the queue's messages (hash: message id -> message)
-- now         now in ms
-- broker_id   this worker's broker id, whose heartbeat is refreshed
-- message_id  the message's id in the broker
-- Returns nothing.
local function ack(heartbeats, fetched, messages, now, broker_id, message_id)
    redis.call("zadd", heartbeats, now, broker_id)
    if redis.call("srem", fetched, message_id) > 0 then
        redis.call("hdel", messages, message_id)
    end
end
