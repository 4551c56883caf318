-- A send with a priority (ENQUEUE_WITH_PRIORITY): Dramatiq's enqueue (heartbeat, message body),
-- with the id put in the priority set instead of the list, waking idle consumers (see
-- aury_tasks.broker.redis.wakeup).
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- KEYS[2] the queue's messages (hash: message id -> message)
-- KEYS[3] the queue's priority set (score: the priority's band plus the sequence)
-- KEYS[4] the queue's priority sequence (counter)
-- KEYS[5] the queue's idle marker
-- ARGV[1] now in ms
-- ARGV[2] the sending broker's id
-- ARGV[3] message id
-- ARGV[4] the encoded message
-- ARGV[5] score of the priority's band
-- ARGV[6] the queue's wake channel
-- Returns nothing.
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
redis.call("hset", KEYS[2], ARGV[3], ARGV[4])
redis.call("zadd", KEYS[3], tonumber(ARGV[5]) + redis.call("incr", KEYS[4]), ARGV[3])
if redis.call("del", KEYS[5]) == 1 then
    redis.call("publish", ARGV[6], "")
end
