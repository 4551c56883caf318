-- Renew the scheduler's leader lease only while we still hold it.
-- KEYS[1] the leader lease
-- ARGV[1] holder
-- ARGV[2] ttl in ms
-- Returns 1 when renewed, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
