-- Wake idle consumers of a queue (WAKE), after messages were put back on it.
-- KEYS[1] the queue's idle marker
-- ARGV[1] the queue's wake channel
-- Returns nothing.
if redis.call("del", KEYS[1]) == 1 then
    redis.call("publish", ARGV[1], "")
end
