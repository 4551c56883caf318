-- A send's write of its task's record (SEND_RECORD), in its short form: the arguments of
-- TRANSITION that vary for a first attempt being sent (pending or scheduled). A new record is
-- written with one HSET and its index entries left to index_backlog; an existing one goes
-- through TRANSITION (see include/send_record.lua).
-- KEYS[1] the task's record hash (<ledger prefix>task:<id>; the prefix is read off it: this is
--         the send path, whose argument list stays as short as it is)
-- ARGV[1] task id
-- ARGV[2] status
-- ARGV[3] phase
-- ARGV[4] queue name
-- ARGV[5] task name
-- ARGV[6] record ttl in ms
-- ARGV[7] now in ms
-- ARGV[8…] field, value, … ('enqueued_at' first; 'message' and the encoded message last)
-- Returns 1 (written) or 0 (refused: the existing record is further on).
--- @include "include/send_record.lua"
local rec = KEYS[1]
return send_record(rec, record_prefix(rec, ARGV[1]), 1, #ARGV)
