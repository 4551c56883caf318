-- One fetch (FETCH): heartbeat, priority ids moved to the list's head, up to ARGV[3] ids popped
-- and recorded as fetched by this worker, their bodies read, the queue's suspects listed; the
-- idle marker set when the fetch took the queue's last message or found none (fewer than asked).
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- KEYS[2] the queue (list of message ids)
-- KEYS[3] the queue's messages (hash: message id -> message)
-- KEYS[4] this worker's fetched set of the queue
-- KEYS[5] the queue's priority set
-- KEYS[6] the queue's suspects (hash: delivery id -> deaths counted)
-- KEYS[7] the queue's idle marker
-- ARGV[1] now in ms
-- ARGV[2] this worker's broker id
-- ARGV[3] how many messages to fetch at most
-- ARGV[4] promote priority ids first, 1/0 (0 for a delay queue)
-- ARGV[5] idle marker lifetime in ms
-- Returns {bodies, suspect ids}.
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
local count = tonumber(ARGV[3])
if ARGV[4] == "1" then
    local popped = redis.call("zpopmin", KEYS[5], count)
    for i = #popped - 1, 1, -2 do
        redis.call("lpush", KEYS[2], popped[i])
    end
end
local suspects = redis.call("hkeys", KEYS[6])
local ids = redis.call("lpop", KEYS[2], count)
if not ids or #ids < count then
    redis.call("set", KEYS[7], "1", "px", ARGV[5])
end
if not ids then
    return {{}, suspects}
end
redis.call("sadd", KEYS[4], unpack(ids))
return {redis.call("hmget", KEYS[3], unpack(ids)), suspects}
