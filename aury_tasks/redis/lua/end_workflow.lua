-- End a workflow record, unless it has ended.
-- KEYS[1] the workflow's record hash
-- ARGV[1] workflow id
-- ARGV[2] the workflow's events channel
-- ARGV[3] status
-- ARGV[4] record ttl in ms
-- ARGV[5…] field, value, …
-- Returns 1 (ended now) or 0 (it had ended, or has no record).
if redis.call('HGET', KEYS[1], 'final') ~= '0' then return 0 end
local fields = {'status', ARGV[3], 'final', '1', 'phase', '4'}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[2], 's:' .. ARGV[3])
return 1
