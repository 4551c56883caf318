-- Give a queue's messages fetched by dead workers back (at the head of the queue: they were
-- fetched before anything waiting there now), counting the deliveries that died with
-- their worker; a delivery that reaches the limit is dead-lettered instead (see
-- aury_tasks.broker.redis.recovery).
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- KEYS[2] the queue (list of message ids)
-- KEYS[3] the queue's messages (hash: message id -> message)
-- KEYS[4] the queue's dead letters (sorted set)
-- KEYS[5] the queue's dead letter messages (hash)
-- KEYS[6] the queue's suspects (hash: delivery id -> deaths counted)
-- KEYS[7] the queue's running suspects (hash: delivery id -> worker)
-- KEYS[8] the queue's idle marker
-- ARGV[1] now in ms
-- ARGV[2] heartbeat timeout in ms
-- ARGV[3] prefix of the workers' fetched sets (followed by <broker id>.<queue name>)
-- ARGV[4] queue name
-- ARGV[5] max deliveries
-- ARGV[6] the caller's broker id
-- ARGV[7] the queue's wake channel
-- Returns {1} when the caller's own heartbeat was stale (a stall: recover nothing), else 0
-- followed by the ids of the messages dead-lettered. A timeout of 0 (Dramatiq's way of taking
-- every worker for dead, the caller included) is never a stall.
local heartbeats, queue, messages, dead, dead_messages = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local suspects, running = KEYS[6], KEYS[7]
local now, timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local fetched_prefix, queue_name, max_deliveries = ARGV[3], ARGV[4], tonumber(ARGV[5])
local own = redis.call("zscore", heartbeats, ARGV[6])
redis.call("zadd", heartbeats, now, ARGV[6])
if own and timeout > 0 and now - tonumber(own) > timeout then
    return {1}
end
local buried = {0}
local back = {}
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
                back[#back + 1] = id
            end
        end
    end
    redis.call("del", fetched)
end
-- Pushed to the head last first, so that they keep the order they were fetched in.
for i = #back, 1, -1 do
    redis.call("lpush", queue, back[i])
end
local requeued = #back
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
