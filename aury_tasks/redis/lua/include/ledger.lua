-- ledger(KEYS, ARGV): a status write (TRANSITION), as a function a composite script calls on its
-- own key and arguments (transition.lua is this function called on the script's).
-- Moves the record forward or does nothing, in one atomic step: compare (attempt, phase) with
-- the record's, write the fields, give it its lifetime and move it between the status indexes
-- (unless it is in none yet: a send's record marked 'unindexed', which index_backlog indexes
-- later under the status it has then, and gives its lifetime), count a task that ended in the
-- minute and hour statistics buckets (all tasks, its queue, its task name) unless the caller
-- counts it itself, and announce the change on the task's event channel.
-- KEYS[1] the task's record hash
-- ARGV[1] task id
-- ARGV[2] status
-- ARGV[3] attempt (0: keep the record's)
-- ARGV[4] phase
-- ARGV[5] final, 0/1
-- ARGV[6] record ttl in ms
-- ARGV[7] now in ms
-- ARGV[8] ledger prefix (KeySpace.ledger_prefix)
-- ARGV[9] queue name (used when the record has none yet)
-- ARGV[10] task name (used when the record has none yet)
-- ARGV[11] duration in µs, or ''
-- ARGV[12] duration bucket
-- ARGV[13] error JSON to append to 'errors', or ''
-- ARGV[14] 'cancel' to announce a cancel, or ''
-- ARGV[15] minute bucket ttl in s (keys.MINUTE_BUCKET_TTL; read only by a final write), or ''
--           when the caller counts the task itself (a worker's StatsTally, flushed once a second)
-- ARGV[16…] field, value, …
-- Returns 1 (written) or 0 (refused: the record is final, or already further on).
-- (A send's write of a new record is send_record's, not this: it leaves the index entries to
-- index_backlog.)
local function ledger(KEYS, ARGV)
    local rec, id, status, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[8]
    local phase, final, now = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[7])
    local cur = redis.call('HMGET', rec, 'status', 'attempt', 'phase', 'final', 'enqueued_at',
                           'queue_name', 'task_name', 'errors', 'unindexed')
    if cur[4] == '1' then return 0 end
    local attempt = tonumber(ARGV[3])
    if attempt == 0 then attempt = tonumber(cur[2] or '1') end
    if cur[1] and final ~= '1' then
        local current_attempt, current_phase = tonumber(cur[2]), tonumber(cur[3])
        if attempt < current_attempt or (attempt == current_attempt and phase <= current_phase) then
            return 0
        end
    end
    local queue, task = cur[6] or ARGV[9], cur[7] or ARGV[10]
    local idx = prefix .. 'idx:'
    local score = now
    if cur[5] then score = math.floor(tonumber(cur[5]) * 1000) end
    -- A record a send wrote and index_backlog has not reached yet is in no index: its status
    -- moves in none either (index_backlog indexes it under the status it has then).
    local indexed = cur[9] ~= '1'
    if cur[1] then
        if indexed then
            redis.call('ZREM', idx .. 'status:' .. cur[1], id)
            redis.call('ZREM', idx .. 'status:' .. cur[1] .. ':queue:' .. queue, id)
            redis.call('ZREM', idx .. 'status:' .. cur[1] .. ':task:' .. task, id)
        end
    else
        redis.call('ZADD', idx .. 'all', score, id)
        redis.call('ZADD', idx .. 'queue:' .. queue, score, id)
        redis.call('ZADD', idx .. 'task:' .. task, score, id)
        redis.call('ZADD', idx .. 'task:' .. task .. ':queue:' .. queue, score, id)
        redis.call('SADD', prefix .. 'queues', queue)
        redis.call('SADD', prefix .. 'tasks', task)
    end
    local fields = {'status', status, 'attempt', attempt, 'phase', ARGV[4], 'final', final,
                    'queue_name', queue, 'task_name', task}
    for i = 16, #ARGV do fields[#fields + 1] = ARGV[i] end
    if ARGV[13] ~= '' then
        local errors = cur[8]
        if errors then errors = string.sub(errors, 1, -2) .. ',' .. ARGV[13] .. ']'
        else errors = '[' .. ARGV[13] .. ']' end
        fields[#fields + 1] = 'errors'
        fields[#fields + 1] = errors
    end
    redis.call('HSET', rec, unpack(fields))
    if indexed then
        redis.call('PEXPIRE', rec, ARGV[6])
        redis.call('ZADD', idx .. 'status:' .. status, score, id)
        redis.call('ZADD', idx .. 'status:' .. status .. ':queue:' .. queue, score, id)
        redis.call('ZADD', idx .. 'status:' .. status .. ':task:' .. task, score, id)
    end
    if final == '1' and ARGV[15] ~= '' then
        local buckets = {
            {'m:' .. math.floor(now / 60000), tonumber(ARGV[15])},
            {'h:' .. math.floor(now / 3600000), math.floor(tonumber(ARGV[6]) / 1000) + 3600},
        }
        for _, dimension in ipairs({'', ':q:' .. queue, ':t:' .. task}) do
            for _, bucket in ipairs(buckets) do
                local key = prefix .. 'stats:' .. bucket[1] .. dimension
                -- The bucket's lifetime is set when one of its status counters is new, which its
                -- own creation always is (not on every count: six commands less per task).
                if redis.call('HINCRBY', key, status, 1) == 1 then
                    redis.call('EXPIRE', key, bucket[2])
                end
                if ARGV[11] ~= '' then
                    redis.call('HINCRBY', key, 'dsum', ARGV[11])
                    redis.call('HINCRBY', key, 'd' .. ARGV[12], 1)
                end
            end
        end
    end
    if ARGV[14] == 'cancel' then
        redis.call('ZADD', prefix .. 'cancelled', now, id)
        redis.call('PUBLISH', prefix .. 'cancel', id)
    end
    redis.call('PUBLISH', prefix .. 'events:' .. id, 's:' .. status)
    return 1
end
