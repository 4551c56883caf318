-- Take a concurrency slot: drop expired leases, then lease one to the run if fewer than the
-- limit are held (a run that holds its lease already, redelivered after its worker died, takes
-- it over). Expiries are on the server's clock (TIME), so that workers whose clocks disagree
-- neither drop each other's leases early nor keep their own for longer.
-- KEYS[1] the task's leases (sorted set: run -> lease expiry, ms)
-- ARGV[1] the run
-- ARGV[2] limit
-- ARGV[3] lease in ms
-- Returns 1 when the run holds a slot, 0 when all are taken.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
        and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
