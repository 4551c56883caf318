-- Extend the leases a worker holds. A lease already gone (expired while its worker could not
-- reach Redis, its slot perhaps taken) is not put back: that could exceed the limit.
-- KEYS[1…] leases (sorted sets: run -> lease expiry, ms), one per run
-- ARGV[1] new expiry in ms
-- ARGV[2] lease in ms
-- ARGV[3…] runs, one per key
-- Returns the runs whose lease was gone.
local lost = {}
for i, leases in ipairs(KEYS) do
    local run = ARGV[i + 2]
    if redis.call('ZSCORE', leases, run) then
        redis.call('ZADD', leases, ARGV[1], run)
        redis.call('PEXPIRE', leases, ARGV[2])
    else
        lost[#lost + 1] = run
    end
end
return lost
