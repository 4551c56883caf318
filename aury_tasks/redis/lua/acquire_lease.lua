-- Take a concurrency slot: drop expired leases, then lease one to the run if fewer than the
-- limit are held (a run that holds its lease already, redelivered after its worker died, takes
-- it over).
-- KEYS[1] the task's leases (sorted set: run -> lease expiry, ms)
-- ARGV[1] the run
-- ARGV[2] limit
-- ARGV[3] now in ms
-- ARGV[4] lease in ms
-- Returns 1 when the run holds a slot, 0 when all are taken.
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
        and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
