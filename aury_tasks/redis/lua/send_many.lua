-- Many sends to one queue, each with its record's write in the short form of SEND_RECORD (or
-- none), in one script call (SEND_MANY): what tracked_send.lua does for each, the queue's bodies
-- and ids written with one HSET and one RPUSH, the heartbeat and the wake-up once (a bulk
-- send's common case). The ledger prefix comes once, in the call's head, not with each message.
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- KEYS[2] the queue's messages (hash: message id -> message)
-- KEYS[3] the queue (list of message ids)
-- KEYS[4] the queue's idle marker
-- ARGV[1] now in ms
-- ARGV[2] the sending broker's id
-- ARGV[3] the queue's wake channel
-- ARGV[4] ledger prefix (KeySpace.ledger_prefix)
-- ARGV[5…] per message: its id, its encoded body, n, then its record write's n arguments
--          (send_record.lua's ARGV without the message; n = 0: no record write)
-- Returns how many messages it sent.
--- @include "include/send_record.lua"
local prefix = ARGV[4]
local ids, bodies = {}, {}
local m = 5
while m <= #ARGV do
    local id, body = ARGV[m], ARGV[m + 1]
    local first, last = m + 3, m + 2 + tonumber(ARGV[m + 2])
    if last >= first then
        send_record(prefix .. 'task:' .. ARGV[first], prefix, first, last, body)
    end
    ids[#ids + 1] = id
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = body
    m = last + 1
end
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
redis.call("hset", KEYS[2], unpack(bodies))
redis.call("rpush", KEYS[3], unpack(ids))
if redis.call("del", KEYS[4]) == 1 then
    redis.call("publish", ARGV[3], "")
end
return #ids
