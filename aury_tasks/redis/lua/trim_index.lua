-- Drop index entries whose record has expired (TRIM_INDEX). Walks ids scored up to a cutoff,
-- oldest first.
-- KEYS[1] the index (sorted set of task ids)
-- ARGV[1] record key prefix (keys.task_record(''))
-- ARGV[2] cutoff score
-- ARGV[3] offset
-- ARGV[4] batch size
-- Returns {ids looked at, ids removed}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
local removed = 0
for _, id in ipairs(ids) do
    if redis.call('EXISTS', ARGV[1] .. id) == 0 then
        redis.call('ZREM', KEYS[1], id)
        removed = removed + 1
    end
end
return {#ids, removed}
