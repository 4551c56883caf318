-- send_record(rec, prefix, first, last, message): a send's write of its task's record, from the
-- write's short form in ARGV, which starts at ARGV[first] and ends at ARGV[last]:
--   ARGV[first]     task id
--   ARGV[first + 1] status
--   ARGV[first + 2] phase
--   ARGV[first + 3] queue name
--   ARGV[first + 4] task name
--   ARGV[first + 5] record ttl in ms
--   ARGV[first + 6] now in ms
--   ARGV[first + 7 … last] field, value, …
-- rec      the task's record hash (keys.task_record)
-- prefix   the ledger prefix (KeySpace.ledger_prefix)
-- message  the encoded message when it is not among the fields (stored as 'message'), or nil
-- The rest of TRANSITION's arguments are the same for every send (attempt 1, not final, indexed
-- later) and are not sent. A new record (the common case) is written here with one HSET
-- (marked 'unindexed'), its id queued for its index entries (index_backlog: the send's round
-- trip stays short; whoever reads an index, a worker that ran tasks, or a send finding the
-- backlog over its limit adds them in batches, and the record gets its lifetime then, or with
-- its next status write); an existing one goes through ledger (TRANSITION).
-- Returns 1 (written) or ledger's reply (1: written, 0: refused).
--
-- The backlog's limit and the batch a send indexes past it are constants here, not arguments: a
-- send and send_many run millions of times, and their argument lists are kept to what varies.
-- INDEX_BACKLOG_LIMIT is aury_tasks.redis.scripts.INDEX_BACKLOG_LIMIT (tests/unit/test_lua_files.py
-- checks they agree): ids a send may leave waiting for their index entries before it indexes
-- some itself. SEND_INDEX_BATCH: ids a send indexes then (more than it adds: the backlog shrinks).
--- @include "include/index_backlog.lua"
--- @include "include/ledger.lua"
local INDEX_BACKLOG_LIMIT = 50000
local SEND_INDEX_BATCH = 32

-- The ledger prefix of a record key <prefix>task:<id> (keys.task_record): what a script that is
-- handed the record's key needs to build the ledger's other keys, without an argument more.
local function record_prefix(rec, id)
    return string.sub(rec, 1, #rec - #id - #'task:')
end

local function send_record(rec, prefix, first, last, message)
    local id, status, phase = ARGV[first], ARGV[first + 1], ARGV[first + 2]
    local queue, task, ttl, now = ARGV[first + 3], ARGV[first + 4], ARGV[first + 5], ARGV[first + 6]
    if redis.call('EXISTS', rec) == 0 then
        if message then
            redis.call('HSET', rec, 'status', status, 'attempt', '1', 'phase', phase, 'final', '0',
                       'queue_name', queue, 'task_name', task, 'unindexed', '1', 'message', message,
                       unpack(ARGV, first + 7, last))
        else
            redis.call('HSET', rec, 'status', status, 'attempt', '1', 'phase', phase, 'final', '0',
                       'queue_name', queue, 'task_name', task, 'unindexed', '1',
                       unpack(ARGV, first + 7, last))
        end
        if redis.call('RPUSH', prefix .. 'unindexed', id) > INDEX_BACKLOG_LIMIT then
            index_backlog(prefix, SEND_INDEX_BATCH, ttl, tonumber(now))
        end
        redis.call('PUBLISH', prefix .. 'events:' .. id, 's:' .. status)
        return 1
    end
    -- TRANSITION's arguments: attempt 1, not final, no duration, error or cancel; no minute bucket
    -- lifetime (only a final write counts in a bucket).
    local args = {id, status, '1', phase, '0', ttl, now, prefix, queue, task, '', '', '', '', ''}
    for i = first + 7, last do args[#args + 1] = ARGV[i] end
    if message then
        args[#args + 1] = 'message'
        args[#args + 1] = message
    end
    return ledger({rec}, args)
end
