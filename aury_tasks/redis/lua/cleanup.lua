-- Delete the records (and their index entries) of tasks that ended before a cutoff (CLEANUP).
-- KEYS none
-- ARGV[1] ledger prefix (KeySpace.ledger_prefix)
-- ARGV[2] enqueue-time cutoff in ms
-- ARGV[3] finish-time cutoff in s
-- ARGV[4] offset
-- ARGV[5] batch size
-- Returns {ids looked at, records deleted}.
local prefix = ARGV[1]
local idx = prefix .. 'idx:'
local ids = redis.call('ZRANGEBYSCORE', idx .. 'all', '-inf', ARGV[2], 'LIMIT', ARGV[4], ARGV[5])
local deleted = 0
for _, id in ipairs(ids) do
    local rec = prefix .. 'task:' .. id
    local r = redis.call('HMGET', rec, 'final', 'finished_at', 'status', 'queue_name', 'task_name')
    if not r[3] then
        redis.call('ZREM', idx .. 'all', id)
        deleted = deleted + 1
    elseif r[1] == '1' and tonumber(r[2] or '0') < tonumber(ARGV[3]) then
        local s = idx .. 'status:' .. r[3]
        redis.call('ZREM', idx .. 'all', id)
        redis.call('ZREM', idx .. 'queue:' .. r[4], id)
        redis.call('ZREM', idx .. 'task:' .. r[5], id)
        redis.call('ZREM', idx .. 'task:' .. r[5] .. ':queue:' .. r[4], id)
        redis.call('ZREM', s, id)
        redis.call('ZREM', s .. ':queue:' .. r[4], id)
        redis.call('ZREM', s .. ':task:' .. r[5], id)
        redis.call('DEL', rec)
        deleted = deleted + 1
    end
end
return {#ids, deleted}
