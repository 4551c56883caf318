-- Free the unique lock of a send that failed, if it still holds that send's task id.
-- KEYS[1] the unique lock
-- ARGV[1] task id
-- Returns 1 when it was freed, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
