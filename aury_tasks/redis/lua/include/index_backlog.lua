-- index_backlog(prefix, count, ttl, now): index entries of records written by a send, a batch
-- at a time (a send leaves them to this: see send_record.lua).
-- prefix  the ledger prefix (KeySpace.ledger_prefix); the keys are built with keys.py's suffixes
-- count   how many ids to pop from the backlog list (<prefix>unindexed) at most
-- ttl     the records' lifetime (ms), given to each record (counted from now: its status writes
--         until now gave it none)
-- now     the time (ms), the score of a record without enqueued_at
-- Pops up to `count` ids; for each record still there, adds the id to every index it belongs in
-- *now* (its current status, which may have moved on since the send), with one variadic ZADD per
-- index key, takes the record's 'unindexed' mark (its status writes move it between the status
-- indexes from then on) and gives it its lifetime from now. Returns how many ids it popped.
local function index_backlog(prefix, count, ttl, now)
    local ids = redis.call('LPOP', prefix .. 'unindexed', count)
    if not ids then return 0 end
    local idx = prefix .. 'idx:'
    local members, order, queues, tasks, seen = {}, {}, {}, {}, {}
    local function add(key, score, id)
        local list = members[key]
        if not list then
            list = {}
            members[key] = list
            order[#order + 1] = key
        end
        list[#list + 1] = score
        list[#list + 1] = id
    end
    for _, id in ipairs(ids) do
        local rec = prefix .. 'task:' .. id
        local r = redis.call('HMGET', rec, 'status', 'queue_name', 'task_name', 'enqueued_at')
        if r[1] then
            local status, queue, task = r[1], r[2], r[3]
            local score = now
            if r[4] then score = math.floor(tonumber(r[4]) * 1000) end
            add(idx .. 'all', score, id)
            add(idx .. 'queue:' .. queue, score, id)
            add(idx .. 'task:' .. task, score, id)
            add(idx .. 'task:' .. task .. ':queue:' .. queue, score, id)
            add(idx .. 'status:' .. status, score, id)
            add(idx .. 'status:' .. status .. ':queue:' .. queue, score, id)
            add(idx .. 'status:' .. status .. ':task:' .. task, score, id)
            if not seen['q' .. queue] then
                seen['q' .. queue] = true
                queues[#queues + 1] = queue
            end
            if not seen['t' .. task] then
                seen['t' .. task] = true
                tasks[#tasks + 1] = task
            end
            redis.call('HDEL', rec, 'unindexed')
            redis.call('PEXPIRE', rec, ttl)
        end
    end
    for _, key in ipairs(order) do redis.call('ZADD', key, unpack(members[key])) end
    if #queues > 0 then
        redis.call('SADD', prefix .. 'queues', unpack(queues))
        redis.call('SADD', prefix .. 'tasks', unpack(tasks))
    end
    return #ids
end
