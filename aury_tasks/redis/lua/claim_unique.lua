-- Claim the unique key of a send: if it is held by a task whose ledger record is not final (or
-- has no record yet: its send is under way), return that task's id; else hold it for the new one.
-- KEYS[1] the unique lock
-- ARGV[1] the new task's id
-- ARGV[2] lock lifetime in ms
-- ARGV[3] record key prefix (keys.task_record(''))
-- Returns the holder's task id, or nil when the lock is now the new task's.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    if redis.call('HGET', ARGV[3] .. holder, 'final') ~= '1' then
        return holder
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
