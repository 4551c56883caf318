-- Extend the leases a worker holds to a lease from now (the server's clock, TIME). A lease
-- already gone (expired while its worker could not reach Redis, its slot perhaps taken) is not
-- put back: that could exceed the limit.
-- KEYS[1…] leases (sorted sets: run -> lease expiry, ms), one per run
-- ARGV[1] lease in ms
-- ARGV[2…] runs, one per key
-- Returns the runs whose lease was gone.
local time = redis.call('TIME')
local expiry = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + tonumber(ARGV[1])
local lost = {}
for i, leases in ipairs(KEYS) do
    local run = ARGV[i + 1]
    if redis.call('ZSCORE', leases, run) then
        redis.call('ZADD', leases, expiry, run)
        redis.call('PEXPIRE', leases, ARGV[1])
    else
        lost[#lost + 1] = run
    end
end
return lost
