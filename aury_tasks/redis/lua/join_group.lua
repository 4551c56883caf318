-- A member's result (or error) handed to its group (JOIN): a result fills its slot only once (a
-- redelivered member changes nothing), the member that fills the last slot fires the group, and
-- only that member may fire it again (its worker died before the continuation was sent).
-- KEYS[1] the group's state (hash)
-- KEYS[2] owed continuations (sorted set: group id -> fired at, ms)
-- ARGV[1] the member's index
-- ARGV[2] its value JSON
-- ARGV[3] member id
-- ARGV[4] 'ok' | 'error'
-- ARGV[5] error JSON
-- ARGV[6] now in ms
-- ARGV[7] group id
-- Returns {'missing'} | {'stopped'} | {'wait', done} | {'fail', frames}
--     | {'fire', frames, workflow id, r0, r1, …}
local g = KEYS[1]
local st = redis.call('HMGET', g, 'total', 'failed', 'fired', 'policy', 'frames', 'wf')
if not st[1] then return {'missing'} end
if ARGV[4] == 'error' and st[4] ~= 'include' then
    if st[2] then return {'stopped'} end
    redis.call('HSET', g, 'failed', ARGV[5])
    return {'fail', st[5]}
end
if redis.call('HSETNX', g, 'r:' .. ARGV[1], ARGV[2]) == 1 then
    redis.call('HINCRBY', g, 'done', 1)
end
if st[2] then return {'stopped'} end
local total = tonumber(st[1])
local done = tonumber(redis.call('HGET', g, 'done'))
if done < total then return {'wait', done} end
if st[3] and st[3] ~= ARGV[3] then return {'stopped'} end
redis.call('HSET', g, 'fired', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[7])
local out = {'fire', st[5], st[6] or ''}
for i = 0, total - 1 do out[#out + 1] = redis.call('HGET', g, 'r:' .. i) end
return out
