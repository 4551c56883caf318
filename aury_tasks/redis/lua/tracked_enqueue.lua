-- A send and a ledger write in TRANSITION's full form (a retry, a delayed message moved to its
-- queue) in one script call (TRACKED_ENQUEUE): one atomic step, one round trip. The ledger write
-- goes first, so the record exists before its message can be fetched.
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- KEYS[2] the queue's messages (hash: message id -> message)
-- KEYS[3] the queue (list of message ids)
-- KEYS[4] the queue's idle marker
-- KEYS[5] the task's record hash
-- ARGV[1] now in ms
-- ARGV[2] the sending broker's id
-- ARGV[3] message id
-- ARGV[4] the encoded message
-- ARGV[5] the queue's wake channel
-- ARGV[6] where the message (ARGV[4]) goes among the ledger's arguments (0: nowhere), so that it
--         crosses the network once
-- ARGV[7…] TRANSITION's arguments (transition.lua's ARGV[1…]), the message's place left ''
-- Returns the ledger write's reply (1: written, 0: refused).
--- @include "include/full_ledger_write.lua"
--- @include "include/enqueue.lua"
local written = full_ledger_write(KEYS[5], 6, ARGV[4])
enqueue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return written
