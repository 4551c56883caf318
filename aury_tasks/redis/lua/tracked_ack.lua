-- An acknowledgement and the task's final record write in one script call (TRACKED_ACK): one
-- atomic step, one round trip. The ledger write goes first, so the record is final before the
-- message is acknowledged.
-- KEYS[1] broker heartbeats (sorted set: broker id -> last call, ms)
-- KEYS[2] this worker's fetched set of the queue
-- KEYS[3] the queue's messages (hash: message id -> message)
-- KEYS[4] the task's record hash
-- ARGV[1] now in ms
-- ARGV[2] this worker's broker id
-- ARGV[3] message id
-- ARGV[4] 0 (the message's place among the ledger's arguments, as in tracked_enqueue.lua: an
--         ack has no message to put in)
-- ARGV[5…] TRANSITION's arguments (transition.lua's ARGV[1…])
-- Returns the ledger write's reply (1: written, 0: refused).
--- @include "include/full_ledger_write.lua"
--- @include "include/ack.lua"
local written = full_ledger_write(KEYS[4], 4, nil)
ack(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
return written
