-- A worker process's beat: refresh its heartbeat and list the workers whose heartbeat went stale
-- lately (in the last ARGV[4] ms) and that hold messages of one of the given queues (a process
-- that only sent is in the heartbeats too). Those stale for longer were looked at by earlier
-- beats.
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- ARGV[1] now in ms
-- ARGV[2] this process's broker id
-- ARGV[3] heartbeat timeout in ms
-- ARGV[4] how far back in ms
-- ARGV[5] prefix of the workers' fetched sets (followed by <broker id>.<queue name>)
-- ARGV[6…] queue names
-- Returns the broker ids of the workers found dead.
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
local dead = {}
local stale = tonumber(ARGV[1]) - tonumber(ARGV[3])
for _, worker in ipairs(redis.call("zrangebyscore", KEYS[1], stale - tonumber(ARGV[4]), stale)) do
    for i = 6, #ARGV do
        if redis.call("exists", ARGV[5] .. worker .. "." .. ARGV[i]) == 1 then
            dead[#dead + 1] = worker
            break
        end
    end
end
return dead
