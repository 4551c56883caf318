-- Take over owed continuations fired before a cutoff (their worker died): re-score them now so
-- that no other worker takes them for another cutoff's length.
-- KEYS[1] owed continuations (sorted set: group id -> fired at, ms)
-- ARGV[1] cutoff in ms
-- ARGV[2] now in ms
-- ARGV[3] how many at most
-- Returns the group ids taken over.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
