-- A progress update (PROGRESS): stored on the record and published, unless the task has ended.
-- KEYS[1] the task's record hash
-- ARGV[1] task id
-- ARGV[2] ledger prefix (KeySpace.ledger_prefix)
-- ARGV[3] progress JSON
-- Returns 1 (stored) or 0 (no record, or the task has ended).
local current = redis.call('HMGET', KEYS[1], 'status', 'final')
if not current[1] or current[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[3])
redis.call('PUBLISH', ARGV[2] .. 'events:' .. ARGV[1], 'p:' .. ARGV[3])
return 1
