-- Give the scheduler's leader lease up only if we hold it.
-- KEYS[1] the leader lease
-- ARGV[1] holder
-- Returns 1 when released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
